"""glibc malloc settings for the long-running service: a bounded, early-reached resident set.

Why: in the 30-minute soak (benchmarks/results/soak.json) the server's RSS was flat for 18 minutes, then
stepped up by 170 MB and stayed there, and its ±70 MB swings stopped at the same moment. That is glibc's
*dynamic* mmap threshold at work: large blocks (activation tensors, decoded images) start out mmap'ed and go
back to the OS when freed; the first time such a block is freed, glibc raises the threshold to its size, and
from then on blocks of that size come from the heap arenas and stay resident. When that happens depends on
which request first frees the largest block, so the footprint steps up at an unpredictable time, per arena
(glibc keeps up to 8 arenas per core, one per busy thread).

What: fix the thresholds at start (setting them disables the dynamic adjustment) and cap the arenas, through
``mallopt(3)``. The process then reaches its steady footprint within the first requests instead of minutes
later. Nothing else changes; on a non-glibc libc (musl, macOS) it is a no-op that says so.

``radclip serve`` applies the thresholds by default and no arena cap (``RADCLIP_MALLOC_ARENA_MAX=0``): in a
quiet 30-minute soak with a cap of 2, throughput fell steadily by 25% (docs/reliability.md, "Soak").
Environment variables (``MALLOC_ARENA_MAX`` ...) would only act at process start; ``mallopt`` works from
``radclip serve`` itself, before the server starts its worker threads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import asdict, dataclass
from typing import Any

# mallopt parameter numbers, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


@dataclass(frozen=True)
class MallocConfig:
    """The values applied by :func:`tune_malloc`; ``None`` leaves a parameter to glibc."""

    arena_max: int | None = 2  # two arenas: the event loop and the inference threads contend little on 2-16 cores
    mmap_threshold: int | None = 32 * 1024 * 1024  # glibc's own ceiling for the dynamic threshold on 64-bit
    trim_threshold: int | None = 64 * 1024 * 1024  # glibc's dynamic rule: twice the mmap threshold


@dataclass(frozen=True)
class MallocReport:
    """What :func:`tune_malloc` did: applied values, or why nothing was applied."""

    applied: bool
    reason: str
    config: MallocConfig

    def to_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "reason": self.reason, **asdict(self.config)}


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    return lib if hasattr(lib, "mallopt") and hasattr(lib, "gnu_get_libc_version") else None


def tune_malloc(config: MallocConfig | None = None) -> MallocReport:
    """Apply ``config`` with ``mallopt``; returns what was done. Call once, early, before worker threads start."""
    config = config or MallocConfig()
    lib = _libc()
    if lib is None:
        return MallocReport(False, "not glibc: mallopt is unavailable, the allocator keeps its defaults", config)
    lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.mallopt.restype = ctypes.c_int
    failed = []
    for param, value, label in (
        (M_ARENA_MAX, config.arena_max, "arena_max"),
        (M_MMAP_THRESHOLD, config.mmap_threshold, "mmap_threshold"),
        (M_TRIM_THRESHOLD, config.trim_threshold, "trim_threshold"),
    ):
        if value is not None and lib.mallopt(param, int(value)) != 1:
            failed.append(label)
    if failed:
        return MallocReport(False, f"mallopt refused {', '.join(failed)} (values out of glibc's range?)", config)
    return MallocReport(True, "glibc mallopt: fixed mmap/trim thresholds, capped arenas", config)
