"""``radclip explain IMAGE --label Effusion --out cam.png``: class activation map overlays."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "write a class activation map overlay (PNG) for one or more findings of a chest X-ray"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="DICOM, PNG or JPEG file")
    parser.add_argument("--label", action="append", default=None, help="finding to explain (repeatable); default: the top-k")
    parser.add_argument("--top-k", type=int, default=3, help="explain the k most probable findings when no --label is given")
    parser.add_argument("--out", type=Path, required=True, help="output PNG")
    parser.add_argument("--model", default=None, help="shipped model name or path (default: settings.triage_model)")
    parser.add_argument("--method", choices=("cam", "gradcam"), default="cam", help="cam: from the single forward pass; gradcam: gradients on the feature map")
    parser.add_argument("--alpha", type=float, default=0.4, help="overlay opacity")


def run(args: argparse.Namespace) -> int:
    import difflib

    import numpy as np
    import torch

    from radclip.eval.calibration import calibrated_probs, calibration_from_card
    from radclip.explain.cam import class_activation_maps, normalize_maps, upsample_maps
    from radclip.explain.gradcam import GradCAM
    from radclip.explain.overlay import save_overlay_png
    from radclip.io.datasets import load_pixels
    from radclip.models.preprocess import image_to_model_input
    from radclip.models.triage import load_triage_model

    model, card = load_triage_model(args.model)
    contract, x = image_to_model_input(load_pixels(args.image), card.preprocessing)
    out = model.predict(x)
    probs = calibrated_probs(out.logits.float().numpy(), calibration_from_card(card))[0]
    if args.label:
        bad = [lab for lab in args.label if lab not in card.labels]
        if bad:
            hints = {b: difflib.get_close_matches(b, card.labels, n=1) for b in bad}
            raise SystemExit(f"unknown label(s) {bad}; did you mean {hints}? Labels: {', '.join(card.labels)}")
        idx = [card.labels.index(lab) for lab in args.label]
    else:
        idx = [int(i) for i in np.argsort(-probs)[: args.top_k]]
    size = card.preprocessing.input_size
    if args.method == "cam":
        cams = class_activation_maps(out.features, model.classifier.weight.detach(), model.classifier.bias.detach(), idx)
        heats = normalize_maps(upsample_maps(cams, size))[0]
    else:
        heats = GradCAM(model)(x, idx, size=size)[0]
    heats_np = [h.numpy() for h in heats.to(torch.float32)]
    titles = [f"{card.labels[k]} p={probs[k]:.2f}" for k in idx]
    path = save_overlay_png(args.out, contract[0], heats_np, titles, alpha=args.alpha)
    print(json.dumps({"out": str(path), "labels": [card.labels[k] for k in idx], "probabilities": [round(float(probs[k]), 4) for k in idx], "method": args.method}))
    return 0
