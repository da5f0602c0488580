"""``radclip report``: the evaluation report (performance, error analysis, embedding maps, fairness, limitations)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "write the evaluation report (HTML + PNG figures + JSON twin) for the triage and image-text models"


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options shared with ``radclip validate``."""
    parser.add_argument("--manifest", type=Path, default=None, help="manifest CSV (default: $RADCLIP_DATA_ROOT/cxr/manifest.csv)")
    parser.add_argument("--images-root", type=Path, default=None, help="folder the manifest paths are relative to (default: the manifest's folder)")
    parser.add_argument("--split", default="test", help="manifest split to evaluate ('all' = every row)")
    parser.add_argument("--triage-model", default=None, help="triage model name or .safetensors/.card.json path (default: settings.triage_model)")
    parser.add_argument("--clip-model", default=None, help="image-text model name or path (default: settings.clip_model)")
    parser.add_argument("--n-boot", type=int, default=300, help="patient-level bootstrap resamples for every CI")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap and t-SNE seed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("--out", type=Path, required=True, help="output folder (report.html, report.json, *.png)")


def run_config(args: argparse.Namespace) -> object:
    from radclip.eval.report_inputs import RunConfig
    from radclip.settings import get_settings

    manifest = args.manifest or get_settings().cxr_root / "manifest.csv"
    if not Path(manifest).is_file():
        raise SystemExit(f"manifest {manifest} not found; pass --manifest or set RADCLIP_DATA_ROOT")
    root = args.images_root or Path(manifest).parent
    return RunConfig(manifest=Path(manifest), images_root=Path(root), split=None if args.split == "all" else args.split,
                     triage_model=args.triage_model, clip_model=args.clip_model, n_boot=args.n_boot, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    from radclip.eval.report import build_report

    report = build_report(run_config(args), args.out)  # type: ignore[arg-type]
    perf = report["performance"]
    print(f"wrote {args.out / 'report.html'} and report.json ({len(report['figures'])} figures) in {report['runtime_s']} s")
    print(f"mean AUC triage {perf['triage']['mean_auc']}, zero-shot {perf['zeroshot']['mean_auc']}; fairness flags: {len(report['fairness']['flags'])}")
    return 0
