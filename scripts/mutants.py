"""Named-mutant check: plant known bugs one at a time in a copy of src/ and require the tests to fail.

Each mutant is a textual patch (``old`` -> ``new``, ``old`` must occur exactly once) to one module.
The script copies ``src/`` to a temp folder, checks that the module's tests pass on the clean copy,
then for each mutant writes the patched module, runs that module's tests with ``PYTHONPATH``
pointing at the copy, and restores the file. A mutant is *killed* when the tests fail, *survived*
when they pass. A mutant whose ``old`` text is no longer in the source is reported as
"mutant not applicable: source changed" and fails the run, so the list is kept up to date.

    .venv/bin/python scripts/mutants.py                 # every mutant (about 6 minutes on 2 shared cores)
    .venv/bin/python scripts/mutants.py --module cam    # the mutants of one module
    .venv/bin/python scripts/mutants.py --only cam-normalize-no-eps --json out.json
    .venv/bin/python scripts/mutants.py --list

Exit status: 0 when every mutant was killed; 1 when one survived or was not applicable; 2 when a
module's tests already fail on the clean copy. Surviving mutants are recorded in docs/mutation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    module: str  # key of MODULES
    old: str  # text replaced (must occur exactly once)
    new: str
    bug: str  # the plausible bug it models
    planted: bool = False  # one of the bugs issue 20's mutation check planted


# module key -> (file under src/radclip, the tests that must catch its mutants)
MODULES: dict[str, tuple[str, list[str]]] = {
    "metrics": ("eval/metrics.py", ["tests/eval/test_bootstrap_percentile.py", "tests/eval/test_metrics_triage.py",
                                    "tests/eval/test_calibration_triage.py", "tests/eval/test_fairness_gaps.py",
                                    "tests/eval/test_gate_compare.py"]),
    "bootstrap": ("eval/patient_bootstrap.py", ["tests/eval/test_bootstrap_percentile.py", "tests/eval/test_patient_bootstrap.py",
                                                "tests/eval/test_metrics_triage.py"]),
    "cam": ("explain/cam.py", ["tests/explain/test_cam_explainers.py",
                               "tests/models/test_triage_models.py::test_predict_is_one_pass_and_keeps_mode"]),
    "dicom": ("io/dicom.py", ["tests/io/test_dicom_synthetic.py", "tests/io/test_dicom_real.py",
                              "tests/io/test_raster_loading.py", "tests/io/test_decode_bounds.py"]),
    "distributed": ("train/distributed.py", ["tests/train/test_distributed_clip.py", "tests/train/test_ddp_sgd_parity.py"]),
}  # fmt: skip

_MONO1_OLD = """    if photometric == "MONOCHROME1":
        np.subtract(1.0, out, out=out)"""
_MONO1_NEW = """    if photometric == "MONOCHROME1" and windowing.startswith("stored range"):
        np.subtract(1.0, out, out=out)"""
_OWN_ROWS_OLD = """    import torch.distributed.nn.functional as dist_fn

    return list(dist_fn.all_gather(t))"""
_OWN_ROWS_NEW = """    import torch.distributed as dist

    out = [torch.zeros_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t.detach())
    out[dist.get_rank()] = t
    return out"""

MUTANTS: list[Mutant] = [
    # --- eval/patient_bootstrap.py (the resampling behind metrics.auc_with_ci)
    Mutant("metrics-ci-90-as-95", "bootstrap", "[100 * alpha / 2, 100 * (1 - alpha / 2)]", "[100 * alpha, 100 * (1 - alpha)]",
           "a 90% bootstrap interval reported as the 95% CI", planted=True),
    Mutant("bootstrap-unstratified", "bootstrap", "for stratum in (np.flatnonzero(has_pos), np.flatnonzero(~has_pos)):",
           "for stratum in (np.arange(len(uniq)),):", "patients resampled together, not stratified by positive/negative"),
    # --- eval/metrics.py
    Mutant("metrics-auc-ordinal-ties", "metrics", "ranks = rankdata(s)", 'ranks = rankdata(s, method="ordinal")',
           "tied scores ranked by position instead of midranks"),
    Mutant("metrics-measurable-strict", "metrics", "return n_pos_patients >= MIN_POS and n_neg_patients >= MIN_NEG",
           "return n_pos_patients > MIN_POS and n_neg_patients > MIN_NEG", "off-by-one in the measurability rule"),
    Mutant("metrics-bootstrap-by-image", "metrics", "return np.arange(n).astype(str) if groups is None else np.asarray(groups).astype(str)",
           "return np.arange(n).astype(str)", "the bootstrap resamples images, not patients"),
    Mutant("metrics-ece-unweighted", "metrics", "ece += in_bin.sum() / y.size * abs(", "ece += 1 / n_bins * abs(",
           "ECE bins averaged without their sizes"),
    Mutant("metrics-mean-all-labels", "metrics", "if r.measurable and r.auc is not None]", "if r.auc is not None]",
           "unmeasurable labels in the mean AUC"),
    # --- explain/cam.py
    Mutant("cam-normalize-no-eps", "cam", "(hi - lo).clamp_min(eps)", "(hi - lo)",
           "normalize_maps without its eps clamp (NaN for constant or 1x1 maps)", planted=True),
    Mutant("cam-bias-subtracted", "cam", "cams = cams + bias.index_select", "cams = cams - bias.index_select",
           "the class bias subtracted"),
    Mutant("cam-class-rows-ignored", "cam", "w = weight.index_select(0, idx)", "w = weight[: len(idx)]",
           "the first K classifier rows instead of the requested classes"),
    Mutant("cam-upsample-corners", "cam", "align_corners=False", "align_corners=True",
           "upsampling with aligned corners (maps shifted against the image)"),
    Mutant("cam-normalize-max-only", "cam", "return (cams - lo) / (hi - lo).clamp_min(eps)", "return cams / hi.clamp_min(eps)",
           "maps divided by their max without subtracting the min"),
    # --- io/dicom.py
    Mutant("dicom-mono1-stored-range-only", "dicom", _MONO1_OLD, _MONO1_NEW,
           "MONOCHROME1 inverted only when no window or VOI LUT is present", planted=True),
    Mutant("dicom-window-own-range", "dicom", "return _normalise(windowed, y_lo, y_hi), label",
           "return _normalise(windowed, float(windowed.min()), float(windowed.max())), label",
           "a windowed image stretched to its own min/max"),
    Mutant("dicom-signed-as-unsigned", "dicom", "return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1", "return 0, 2**bits - 1",
           "signed pixel data given the unsigned stored range"),
    Mutant("dicom-voi-lut-full-range", "dicom", "_normalise(mapped, float(table.min()), float(table.max()))",
           "_normalise(mapped, 0.0, 65535.0)", "a VOI LUT scaled by its declared 16 bits, not its output range"),
    Mutant("dicom-luma-equal-weights", "dicom", "np.array([0.299, 0.587, 0.114])", "np.array([1 / 3, 1 / 3, 1 / 3])",
           "colour to grey by a plain mean instead of BT.601 luma"),
    Mutant("dicom-window-beats-voi-lut", "dicom", "    if has_voi_lut:\n", '    if has_voi_lut and ds.get("WindowCenter") is None:\n',
           "a window preferred over a VOI LUT"),
    # --- train/distributed.py
    Mutant("ddp-own-rows-only", "distributed", _OWN_ROWS_OLD, _OWN_ROWS_NEW,
           "each rank gets gradients for its own rows only (all-gather without gradient)", planted=True),
    Mutant("ddp-rank-order-reversed", "distributed",
           "return torch.cat(_all_gather_with_grad(img)), torch.cat(_all_gather_with_grad(txt))",
           "return torch.cat(_all_gather_with_grad(img)[::-1]), torch.cat(_all_gather_with_grad(txt)[::-1])",
           "gathered embeddings not in rank order"),
    Mutant("ddp-no-grad-drops-local-graph", "distributed", "imgs[info.rank], txts[info.rank] = img, txt", "pass",
           "the gather without gradient loses the local rows' graph too"),
    Mutant("ddp-broadcast-skipped", "distributed", "dist.broadcast(t, src=0)", "pass",
           "replicas keep their own (seed + rank) initial weights"),
    Mutant("ddp-rows-reversed", "distributed", "return torch.cat(_all_gather_no_grad(t, info.world_size))",
           "return torch.cat(_all_gather_no_grad(t, info.world_size)[::-1])", "label rows gathered out of rank order"),
]  # fmt: skip


@dataclass
class Outcome:
    name: str
    module: str
    status: str  # killed | survived | not applicable | timeout
    seconds: float
    bug: str
    planted: bool
    detail: str = ""


def _pytest(tests: list[str], copy_src: Path, timeout: float) -> tuple[int | None, str]:
    """Run ``tests`` against the copy; (exit status or None on timeout, the last lines of output)."""
    env = {**os.environ, "PYTHONPATH": str(copy_src), "PYTHONDONTWRITEBYTECODE": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    failed = [line for line in lines if line.startswith(("FAILED ", "ERROR "))]  # the test that caught it
    return proc.returncode, failed[0] if failed else (lines[-1] if lines else "")


def run_mutant(m: Mutant, copy_src: Path, timeout: float) -> Outcome:
    rel, tests = MODULES[m.module]
    path = copy_src / "radclip" / rel
    original = path.read_text()
    count = original.count(m.old)
    if count != 1:
        why = "text not found" if count == 0 else f"text found {count} times"
        return Outcome(m.name, m.module, "not applicable", 0.0, m.bug, m.planted,
                       f"mutant not applicable: source changed ({why} in src/radclip/{rel}); update scripts/mutants.py")  # fmt: skip
    start = time.monotonic()
    path.write_text(original.replace(m.old, m.new))
    try:
        rc, tail = _pytest(tests, copy_src, timeout)
    finally:
        path.write_text(original)
    status = "timeout" if rc is None else ("survived" if rc == 0 else "killed")
    return Outcome(m.name, m.module, status, round(time.monotonic() - start, 1), m.bug, m.planted, tail)


def _select(args: argparse.Namespace) -> list[Mutant]:
    chosen = [
        m
        for m in MUTANTS
        if (not args.module or m.module in args.module) and (not args.only or m.name in args.only)
    ]
    unknown = set(args.only or []) - {m.name for m in MUTANTS}
    if unknown:
        raise SystemExit(f"unknown mutant(s) {sorted(unknown)}; list them with --list")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--module", action="append", choices=sorted(MODULES), help="only this module's mutants (repeatable)"
    )
    parser.add_argument("--only", action="append", metavar="NAME", help="only this mutant (repeatable)")
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    parser.add_argument("--json", type=Path, help="also write the outcomes to this JSON file")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per test run (default 300)")
    args = parser.parse_args(argv)
    mutants = _select(args)
    if args.list:
        for m in mutants:
            print(f"{m.name:34s} {MODULES[m.module][0]:22s} {'planted ' if m.planted else ''}{m.bug}")
        return 0
    with tempfile.TemporaryDirectory(prefix="radclip-mutants-") as tmp:
        copy_src = Path(tmp) / "src"
        shutil.copytree(REPO / "src", copy_src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for module in sorted({m.module for m in mutants}):  # a kill means nothing if the tests fail anyway
            rc, tail = _pytest(MODULES[module][1], copy_src, args.timeout)
            if rc != 0:
                print(
                    f"the {module} tests fail on the unmutated source ({tail}); fix them first",
                    file=sys.stderr,
                )
                return 2
        outcomes = []
        for m in mutants:
            out = run_mutant(m, copy_src, args.timeout)
            outcomes.append(out)
            print(
                f"{out.status:15s} {out.name:34s} {out.seconds:6.1f} s  {out.detail}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=2) + "\n")
    bad = [o for o in outcomes if o.status in ("survived", "not applicable")]
    print(f"\n{sum(o.status in ('killed', 'timeout') for o in outcomes)} of {len(outcomes)} mutants killed; "
          f"{len(bad)} survived or not applicable: {[o.name for o in bad]}")  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
