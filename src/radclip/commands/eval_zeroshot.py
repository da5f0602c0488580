"""``radclip eval zeroshot``: prompt transfer (NIH labels, unseen wording) and zero-shot AUCs of the image-text model."""

from __future__ import annotations

import argparse
import functools

HELP = (
    "prompt-transfer (14 NIH labels, unseen wording) and zero-shot (pediatric pneumonia, COVID-19) AUCs "
    "of the image-text model, with patient counts, CIs and a paired comparison with triage"
)


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
    parser.add_argument(
        "--prompt-set",
        choices=("eval", "training"),
        default="eval",
        help="eval: the frozen evaluation prompt set (default); training: the training-worded prompts "
        "of models/prompts.py (the pre-issue-20 measurement, kept to reproduce cards made with it)",
    )
    parser.add_argument(
        "--triage-model",
        default="radclip-mobilenetv2-nih",
        help="supervised triage model compared on the same images ('' = no comparison)",
    )


@functools.lru_cache(maxsize=2)
def load_model_and_card(name: str) -> tuple[object, object]:
    """The image-text model and its card, loaded once per process (both eval commands share it)."""
    from radclip.models.registry import load_pretrained

    if not name:
        from radclip.settings import get_settings

        name = get_settings().clip_model
    model, card = load_pretrained(name)
    if card.task != "clip":
        raise SystemExit(
            f"model {name!r} is a {card.task!r} model; pass an image-text (task 'clip') model with --model"
        )
    return model, card


def load_model(name: str) -> object:
    """The image-text model (see :func:`load_model_and_card`)."""
    return load_model_and_card(name)[0]


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from radclip.eval.zeroshot import evaluate_training_prompts, evaluate_zeroshot

    root = args.images_root or str(Path(args.manifest).parent)
    split = None if args.split == "all" else args.split
    model, card = load_model_and_card(args.model)
    if args.prompt_set == "training":
        report = evaluate_training_prompts(model, args.manifest, root, split, n_boot=args.n_boot)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps({k: report[k] for k in ("prompt_set", "mean_auc", "n_images", "split")}))
        return 0
    training_text = f"{getattr(card, 'source', '')} {getattr(card, 'training_data', '')}"
    report = evaluate_zeroshot(
        model, args.manifest, root, split, args.n_boot, training_text, args.triage_model or None
    )
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(summary(report)))
    return 0


def summary(report: dict) -> dict:
    """One line per named number: prompt transfer mean and every beyond-NIH task's AUC with its CI."""
    pt = report["prompt_transfer"]
    out = {
        "split": report["split"],
        "prompt_transfer_mean_auc": pt["mean_auc"],
        "measurable_labels": len(pt["measurable_labels"]),
    }
    if "mean_diff_vs_triage" in pt:
        d = pt["mean_diff_vs_triage"]
        out["prompt_transfer_minus_triage"] = [d["diff"], d["lo"], d["hi"]]
    for kind in ("zero_shot", "prompt_transfer_from_notes", "trained_on_this_source"):
        for name, e in report.get(kind, {}).items():
            out[f"{kind}/{name}"] = [
                e["auc"],
                e["lo"],
                e["hi"],
                f"{e['n_pos_patients']}+/{e['n_neg_patients']}- patients",
            ]
    return out
