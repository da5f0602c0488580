"""``radclip eval zeroshot``: zero-shot AUC of the image-text model on a manifest's NIH rows."""

from __future__ import annotations

import argparse
import functools

HELP = "zero-shot per-finding AUC of the image-text model (prompt ensembles, prompt sensitivity)"


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True, help="manifest CSV")
    parser.add_argument(
        "--images-root",
        default="",
        help="folder the manifest paths are relative to (default: the manifest's folder)",
    )
    parser.add_argument("--split", default="test", help="manifest split ('all' = every row)")
    parser.add_argument(
        "--model",
        default="",
        help="shipped model name or .safetensors/.card.json path (default: settings' clip_model)",
    )
    parser.add_argument("--out", required=True, help="JSON report path")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument(
        "--n-boot", type=int, default=1000, help="bootstrap resamples for the AUC CIs (0 = none)"
    )


@functools.lru_cache(maxsize=2)
def load_model(name: str) -> object:
    """The image-text model, loaded once per process (both eval commands in one session share it)."""
    from radclip.models.registry import load_pretrained

    if not name:
        from radclip.settings import get_settings

        name = get_settings().clip_model
    model, card = load_pretrained(name)
    if card.task != "clip":
        raise SystemExit(
            f"model {name!r} is a {card.task!r} model; pass an image-text (task 'clip') model with --model"
        )
    return model


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from radclip.eval.zeroshot import evaluate_zeroshot

    root = args.images_root or str(Path(args.manifest).parent)
    split = None if args.split == "all" else args.split
    report = evaluate_zeroshot(load_model(args.model), args.manifest, root, split, n_boot=args.n_boot)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(
        json.dumps({"mean_auc": report["mean_auc"], "n_images": report["n_images"], "split": report["split"]})
    )
    return 0
