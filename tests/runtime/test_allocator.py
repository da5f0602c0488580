"""runtime/allocator.py: mallopt settings, and the footprint behaviour they exist for (in a fresh process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from radclip.runtime.allocator import MallocConfig, _libc, tune_malloc

glibc = pytest.mark.skipif(_libc() is None, reason="not glibc: mallopt is unavailable here")

# In a fresh process: allocate and free four 16 MB blocks under a live small block (which keeps the heap top
# in place, as a cached tensor would), and print the RSS they leave behind; then free one 24 MB block (under
# glibc's defaults that raises the dynamic mmap threshold to 24 MB) and repeat. Prints both RSS increases.
_PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from pathlib import Path
    sys.path.insert(0, {src!r})
    def rss_mb():
        line = next(l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('VmRSS:'))
        return int(line.split()[1]) / 1024
    if {tune}:
        from radclip.runtime.allocator import tune_malloc
        assert tune_malloc().applied
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    def touch(n):
        p = libc.malloc(n); libc.memset(p, 1, n); return p
    def retained():
        before = rss_mb()
        blocks = [touch(16 << 20) for _ in range(4)]
        touch(256 << 10)  # stays allocated, above the 16 MB blocks (a small block would reuse a free bin)
        for p in blocks:
            libc.free(p)
        return round(rss_mb() - before, 1)
    first = retained()
    libc.free(touch(24 << 20))
    print(first, retained())
    """
)


def _retained_mb(tune: bool) -> tuple[float, float]:
    import radclip

    src = str(__import__("pathlib").Path(radclip.__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", _PROBE.format(src=src, tune=tune)], capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    first, second = out.stdout.split()
    return float(first), float(second)


@glibc
def test_tune_malloc_applies_the_config_on_glibc() -> None:
    report = tune_malloc(MallocConfig())
    assert report.applied, report.reason
    assert report.to_dict()["arena_max"] == 2 and report.to_dict()["mmap_threshold"] == 32 * 1024 * 1024


def test_off_glibc_nothing_is_applied_and_the_report_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    import radclip.runtime.allocator as allocator

    monkeypatch.setattr(allocator, "_libc", lambda: None)
    report = allocator.tune_malloc()
    assert not report.applied and "not glibc" in report.reason


@glibc
def test_the_fixed_threshold_reaches_the_plateau_first_instead_of_stepping_up_later() -> None:
    # glibc's defaults: the 16 MB blocks add nothing resident until a 24 MB block has been freed, then 64 MB at
    # once: the soak's late step (+170 MB at minute 19). Tuned: the same 64 MB become resident in the first
    # round and are reused in the second; the same final footprint, reached at the start, with no later step.
    default_before, default_after = _retained_mb(False)
    assert default_before < 8 and default_after > 48, (default_before, default_after)  # the premise: the step
    tuned_before, tuned_after = _retained_mb(True)
    assert tuned_before > 48 and tuned_after < 8, (tuned_before, tuned_after)
