"""``radclip eval triage``: per-label AUC (+95% CI by patient), mean AUC, ECE, localisation -> JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "evaluate a triage model on a manifest split and write a JSON report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, default=None, help="manifest CSV (default: $RADCLIP_DATA_ROOT/cxr/manifest.csv)")
    parser.add_argument("--images-root", type=Path, default=None, help="folder the manifest paths are relative to (default: the manifest's folder)")
    parser.add_argument("--split", default="test", help="split to evaluate (ignored when the manifest has no split column)")
    parser.add_argument("--sources", default=None, help="comma-separated sources to keep (default: all; rows without labels are skipped for AUC)")
    parser.add_argument("--model", default=None, help="shipped model name or path (default: settings.triage_model)")
    parser.add_argument("--bboxes", type=Path, default=None, help="bboxes.csv: adds pointing game and IoU of the thresholded CAM")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the CIs")
    parser.add_argument("--out", type=Path, required=True, help="report JSON")
    parser.add_argument("--reliability-png", type=Path, default=None, help="also write a reliability diagram (uncalibrated vs the card's calibration)")
    parser.add_argument("--update-card", action="store_true", help="also store the report's numbers in the model card's metrics")


def run(args: argparse.Namespace) -> int:
    from radclip.eval.triage_eval import evaluate_triage
    from radclip.models.registry import find_card
    from radclip.models.triage import load_triage_model
    from radclip.settings import get_settings

    manifest = args.manifest or get_settings().cxr_root / "manifest.csv"
    root = args.images_root or Path(manifest).parent
    sources = [s.strip() for s in args.sources.split(",")] if args.sources else None
    model, card = load_triage_model(args.model)
    report = evaluate_triage(model, card, manifest, root, split=args.split, sources=sources, bboxes=args.bboxes, n_boot=args.n_boot, reliability_png=args.reliability_png)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.update_card:
        card_obj, card_path = find_card(args.model or get_settings().triage_model)
        key = f"test_{args.split}" if args.split != "test" else "test"
        card_obj.metrics[key] = {k: report[k] for k in ("split", "sources", "n_images_with_labels", "n_patients", "mean_auc", "measurable_labels", "unmeasurable_labels", "per_label", "ece", "brier", "ece_calibrated", "brier_calibrated", "bootstrap") if k in report}
        card_obj.save(card_path)
    mean = report["mean_auc"]
    print(json.dumps({"out": str(args.out), "mean_auc": mean, "measurable_labels": len(report["measurable_labels"]), "ece": report["ece"], "ece_calibrated": report.get("ece_calibrated")}))
    return 0
