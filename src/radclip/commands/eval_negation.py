"""``radclip eval negation``: negation sensitivity of a text tower on the frozen affirmed/negated pair set."""

from __future__ import annotations

import argparse

HELP = "negation sensitivity of the text tower: affirmed/negated pair cosine, gap and probe accuracy"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="",
        help="image-text model name or .safetensors path (default: settings' clip_model); 'minilm' = the bare package MiniLM",
    )
    parser.add_argument(
        "--text-layers",
        default="",
        help="with --model minilm: fine-tuned top layers (text_layers.safetensors) loaded over the package MiniLM",
    )
    parser.add_argument("--out", required=True, help="JSON report path")


def _encoders(args: argparse.Namespace) -> dict[str, object]:
    """name -> texts -> embeddings: the trunk's pooled features, and (for a model) the projected embeddings."""
    if args.model == "minilm":
        from radclip.models.text_encoder import TextConfig, TextTrunk, tuned_layers_in

        n = tuned_layers_in(args.text_layers) if args.text_layers else 0
        trunk = TextTrunk(TextConfig(kind="minilm", tuned_layers=n)).eval()
        if args.text_layers:
            trunk.load_tuned(args.text_layers)
        return {"trunk": lambda t: trunk(trunk.tokenize(t)).detach().numpy()}
    from radclip.commands.eval_zeroshot import load_model

    model = load_model(args.model)
    model.eval()  # type: ignore[attr-defined]
    return {
        "trunk": lambda t: model.text_features(list(t)).detach().numpy(),  # type: ignore[attr-defined]
        "embedding": lambda t: model.encode_text(list(t)).detach().numpy(),  # type: ignore[attr-defined]
    }


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch

    from radclip.eval.negation import evaluate_negation

    if args.text_layers and args.model != "minilm":
        raise SystemExit(
            "--text-layers applies to --model minilm only; a trained model carries its own tuned layers"
        )
    report: dict[str, object] = {"model": args.model or "default", "text_layers": args.text_layers}
    with torch.no_grad():
        for name, enc in _encoders(args).items():
            report[name] = evaluate_negation(enc)  # type: ignore[arg-type]
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    short = {
        k: {m: v[m] for m in ("pair_cosine", "gap", "probe_accuracy")}
        for k, v in report.items()
        if isinstance(v, dict)
    }
    print(json.dumps(short))
    return 0
