"""``radclip monitor drift-reference``: fit the drift reference of the image-text model and ship it beside its weights."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "fit the embedding-drift reference (mean of train-split NIH + covid embeddings) beside the image-text weights"


def _sample(text: str) -> dict[str, int]:
    try:
        pairs = [part.split(":") for part in text.split(",") if part.strip()]
        out = {source.strip(): int(n) for source, n in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sample {text!r}: write SOURCE:COUNT pairs, e.g. nih:300,covid:50"
        ) from None
    if not out or min(out.values()) < 1:
        raise argparse.ArgumentTypeError(f"--sample {text!r}: name at least one source with a positive count")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from radclip.engine.drift_reference import DEFAULT_SAMPLE

    default = ",".join(f"{s}:{n}" for s, n in DEFAULT_SAMPLE.items())
    parser.add_argument(
        "--model",
        default=None,
        help="image-text model name or .safetensors path (default RADCLIP_CLIP_MODEL)",
    )
    parser.add_argument(
        "--manifest",
        default=None,
        help="manifest CSV (default: the shared cxr/manifest.csv); only its train rows are read",
    )
    parser.add_argument(
        "--sample",
        type=_sample,
        default=DEFAULT_SAMPLE,
        help=f"train images per source, SOURCE:COUNT,... (default {default})",
    )
    parser.add_argument(
        "--out", default=None, help="output file (default: <model>.drift.safetensors beside the model's card)"
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from radclip.engine.drift_reference import (
        drift_reference_path,
        embed_paths,
        fit_drift_reference,
        sample_train_paths,
        save_drift_reference,
    )
    from radclip.engine.encoders import default_image_embedder
    from radclip.io.manifest import data_snapshot
    from radclip.models.registry import find_card
    from radclip.settings import get_settings

    model = args.model or get_settings().clip_model
    manifest = Path(args.manifest) if args.manifest else get_settings().cxr_root / "manifest.csv"
    try:
        card, card_file = find_card(model)
        paths = sample_train_paths(manifest, args.sample)
        embs = embed_paths(default_image_embedder(model), [manifest.parent / p for p in paths])
        sources = ",".join(f"{s}:{n}" for s, n in args.sample.items())
        ref = fit_drift_reference(embs, card.weights_sha256, data_snapshot(manifest), sources)
        out = save_drift_reference(
            Path(args.out) if args.out else drift_reference_path(card_file, card.name), ref
        )
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"radclip monitor drift-reference: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"drift_reference": str(out), "model": card.name, "model_sha256": card.weights_sha256,
                      "images": ref.n, "sample": args.sample, "split": "train", "data_snapshot": ref.data_snapshot}, indent=1))  # fmt: skip
    return 0
