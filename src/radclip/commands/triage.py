"""``radclip triage IMAGE``: calibrated probabilities for the 14 NIH findings of one radiograph."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HELP = "score one chest X-ray (DICOM or PNG/JPEG) for the 14 NIH findings with calibrated probabilities"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="DICOM, PNG or JPEG file")
    parser.add_argument("--model", default=None, help="shipped model name or path to .safetensors/.card.json (default: settings.triage_model)")
    parser.add_argument("--json", action="store_true", help="print JSON (default: a table)")


def triage_image(path: Path, model_name: str | None = None) -> dict[str, Any]:
    """Load, preprocess, score; returns the JSON-ready result."""
    import time

    import numpy as np

    from radclip.eval.calibration import calibrated_probs, calibration_from_card
    from radclip.io.datasets import load_pixels
    from radclip.models.confidence import confidence_band
    from radclip.models.preprocess import image_to_model_input
    from radclip.models.triage import load_triage_model

    model, card = load_triage_model(model_name)
    pixels = load_pixels(path)
    t0 = time.perf_counter()
    _, x = image_to_model_input(pixels, card.preprocessing)
    out = model.predict(x)
    ms = (time.perf_counter() - t0) * 1000
    logits = out.logits.float().numpy()
    calibration = calibration_from_card(card)
    probs = calibrated_probs(logits, calibration)[0]
    counts = (card.calibration or {}).get("val_bin_counts")
    findings = []
    for k, label in enumerate(card.labels):
        lo, hi = confidence_band(float(probs[k]), counts)
        findings.append({"label": label, "probability": round(float(probs[k]), 4), "band95": [round(lo, 4), round(hi, 4)], "uncalibrated": round(float(1 / (1 + np.exp(-logits[0, k]))), 4)})
    return {
        "image": str(path),
        "model": card.name,
        "model_version": card.version,
        "weights_sha256": card.weights_sha256,
        "calibrated": calibration is not None,
        "inference_ms": round(ms, 1),
        "findings": findings,
    }


def run(args: argparse.Namespace) -> int:
    result = triage_image(args.image, args.model)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['image']}  model {result['model']} v{result['model_version']}  {result['inference_ms']} ms")
    for f in sorted(result["findings"], key=lambda f: -f["probability"]):
        print(f"  {f['label']:<20} {f['probability']:.3f}  [{f['band95'][0]:.3f}, {f['band95'][1]:.3f}]")
    return 0
