"""``radclip calibrate triage``: refit a triage card's per-label calibration on the validation split.

Weights stay as they are; only the card's ``calibration`` block is replaced (and the card must then be
re-measured: ``scripts/rebaseline_cards.py --only triage``). With ``--compare`` it first shows, by
patient-grouped 5-fold cross-validation on the same split, the out-of-fold ECE of temperature scaling
against Platt with the ``pos_weight`` prior shift: the choice is made on validation, never on test.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "refit a triage model card's per-label calibration (temperature + intercept after the pos_weight shift) on the validation split"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="shipped model name or path (default: settings.triage_model)")
    parser.add_argument("--manifest", type=Path, default=None, help="manifest CSV (default: $RADCLIP_DATA_ROOT/cxr/manifest.csv)")
    parser.add_argument("--images-root", type=Path, default=None, help="folder the manifest paths are relative to (default: the manifest's folder)")
    parser.add_argument("--split", default="val", help="split to fit on (never the test split)")
    parser.add_argument("--sources", default="nih", help="comma-separated sources with the labels")
    parser.add_argument("--pos-weight", default="auto", help="the pos_weight the model was trained with: 'auto' (recomputed from the train split), 'none', or a number")
    parser.add_argument("--compare", action="store_true", help="also report the cross-validated ECE of temperature-only vs the prior-shift Platt fit")
    parser.add_argument("--dry-run", action="store_true", help="print the new block, do not write the card")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from radclip.eval.calibration import (
        LabelCalibration,
        calibration_block,
        cross_validated_ece,
        fit_platt_per_label,
        fit_temperatures,
        prior_shift,
    )
    from radclip.eval.triage_eval import collect_logits
    from radclip.io.datasets import ManifestDataset
    from radclip.io.manifest import read_manifest
    from radclip.models.registry import find_card
    from radclip.models.triage import load_triage_model
    from radclip.settings import get_settings
    from radclip.train.triage_trainer import auto_pos_weight

    if args.split == "test":
        print("error: calibration is fitted on validation, never on the test split; pass --split val")
        return 2
    manifest = args.manifest or get_settings().cxr_root / "manifest.csv"
    root = args.images_root or Path(manifest).parent
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    model, card = load_triage_model(args.model)
    names = list(card.labels)
    frame = read_manifest(manifest)
    if args.pos_weight == "auto":
        train = frame[(frame["split"] == "train") & frame["source"].isin(sources)]
        weight = auto_pos_weight(train[names].astype(float).to_numpy())
    elif args.pos_weight == "none":
        weight = None
    else:
        weight = np.full(len(names), float(args.pos_weight))
    shift = prior_shift(weight, len(names))
    ds = ManifestDataset(frame, root, split=args.split, sources=sources, size=card.preprocessing.input_size, cache=False)
    preds = collect_logits(model, ds, card.preprocessing)
    patients = np.asarray(preds.patient_ids)
    summary: dict[str, object] = {"model": card.name, "version": card.version, "split": args.split, "n_images": len(preds.logits)}
    if args.compare:
        def temperature_only(z: np.ndarray, y: np.ndarray, g: np.ndarray) -> LabelCalibration:
            return LabelCalibration(fit_temperatures(z, y, g), np.zeros(len(names)))

        def platt(z: np.ndarray, y: np.ndarray, g: np.ndarray) -> LabelCalibration:
            return fit_platt_per_label(z, y, g, shift=shift)

        summary["cross_validated"] = {"temperature only": cross_validated_ece(preds.logits, preds.labels, patients, temperature_only, names),
                                      "prior shift + Platt": cross_validated_ece(preds.logits, preds.labels, patients, platt, names)}
    calibration = fit_platt_per_label(preds.logits, preds.labels, patients, shift=shift)
    block = calibration_block(calibration, shift, names, preds.logits, preds.labels, f"the {args.split} split ({len(preds.logits)} images, sources {sources})")
    if "cross_validated" in summary:
        block["selection"] = {"how": f"patient-grouped 5-fold cross-validation on the {args.split} split (out-of-fold ECE, 10 bins)", **summary["cross_validated"]}  # type: ignore[dict-item]
    summary["calibration"] = block
    if not args.dry_run:
        card_obj, card_path = find_card(args.model or get_settings().triage_model)
        card_obj.calibration = block
        card_obj.save(card_path)
        summary["card"] = str(card_path)
        summary["next"] = "re-measure the card: .venv/bin/python scripts/rebaseline_cards.py --only triage"
    print(json.dumps(summary, indent=1))
    return 0
