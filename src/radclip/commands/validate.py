"""``radclip validate``: the release gate against a baseline report (exit 1 = roll back, 2 = bad baseline, 3 = other data: re-baseline)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "release gate: recompute key metrics on the baseline's data and fail closed (significant AUC drop > 0.02, missing findings, new fairness flags, other data)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from radclip.commands.report import add_common

    add_common(parser)
    parser.add_argument("--baseline", type=Path, required=True, help="baseline report.json (from 'radclip report'; its 'gate' block is compared)")
    parser.add_argument("--max-auc-drop", type=float, default=0.02, help="largest allowed AUC drop per measurable finding")
    parser.add_argument("--out", type=Path, default=None, help="also write the candidate's gate metrics as JSON here")
    parser.add_argument("--n-boot-diff", type=int, default=1000, help="paired patient-bootstrap resamples for each AUC drop's CI")
    parser.add_argument("--verbose", action="store_true", help="also list findings not measurable in baseline or candidate")


def run(args: argparse.Namespace) -> int:
    import json

    from radclip.commands.report import run_config
    from radclip.eval.gate import REBASELINE_COMMAND, compare, format_diff, load_baseline
    from radclip.eval.report import compute_gate
    from radclip.io.manifest import data_snapshot

    try:
        baseline = load_baseline(args.baseline)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
    cfg = run_config(args)
    snapshot = data_snapshot(cfg.manifest)  # type: ignore[attr-defined]
    if baseline.get("data_snapshot") != snapshot:  # checked before the (minutes-long) model pass
        print(f"GATE FAILED: the baseline {args.baseline} was measured on data {baseline.get('data_snapshot')!r}, this manifest is {snapshot!r}.\n"
              f"A gate only compares like with like. If the data changed, re-baseline the shipped models with '{REBASELINE_COMMAND}' "
              "and commit it as a data change (not a model change).")
        return 3
    current = compute_gate(cfg)  # type: ignore[arg-type]
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(current, indent=1) + "\n")
    result = compare(baseline, current, max_auc_drop=args.max_auc_drop, n_boot=args.n_boot_diff)
    print(format_diff(result, verbose=args.verbose))
    if result.data_mismatch:
        return 3
    return 0 if result.passed else 1
