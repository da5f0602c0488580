"""``radclip validate``: the release gate against a baseline report (exit 1 = roll back)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "release gate: recompute key metrics and fail if an AUC drops > 0.02 or a new fairness flag appears"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from radclip.commands.report import add_common

    add_common(parser)
    parser.add_argument("--baseline", type=Path, required=True, help="baseline report.json (from 'radclip report'; its 'gate' block is compared)")
    parser.add_argument("--max-auc-drop", type=float, default=0.02, help="largest allowed AUC drop per measurable finding")
    parser.add_argument("--out", type=Path, default=None, help="also write the candidate's gate metrics as JSON here")
    parser.add_argument("--significant-flags-only", action="store_true", help="fail on a new fairness flag only when its gap's bootstrap CI excludes 0")
    parser.add_argument("--verbose", action="store_true", help="also list findings not measurable in baseline or candidate")


def run(args: argparse.Namespace) -> int:
    import json

    from radclip.commands.report import run_config
    from radclip.eval.gate import compare, format_diff, load_baseline
    from radclip.eval.report import compute_gate

    try:
        baseline = load_baseline(args.baseline)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
    current = compute_gate(run_config(args))  # type: ignore[arg-type]
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(current, indent=1) + "\n")
    if baseline.get("split") != current.get("split") or baseline.get("n_images") != current.get("n_images"):
        print(f"note: baseline was computed on split {baseline.get('split')!r} with {baseline.get('n_images')} images; "
              f"candidate on {current.get('split')!r} with {current.get('n_images')} images")
    result = compare(baseline, current, max_auc_drop=args.max_auc_drop, significant_flags_only=args.significant_flags_only)
    print(format_diff(result, verbose=args.verbose))
    return 0 if result.passed else 1
