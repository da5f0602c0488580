"""``radclip eval retrieval``: image <-> report retrieval of the image-text model on a manifest's report rows."""

from __future__ import annotations

import argparse

from radclip.commands.eval_zeroshot import add_common

HELP = "image<->report retrieval R@1/5/10 both ways, label-consistent precision@K, matched cosine"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from radclip.commands.eval_zeroshot import load_model
    from radclip.eval.retrieval import evaluate_retrieval

    root = args.images_root or str(Path(args.manifest).parent)
    split = None if args.split == "all" else args.split
    report = evaluate_retrieval(load_model(args.model), args.manifest, root, split)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: report[k] for k in ("i2t_R@5", "t2i_R@5", "matched_cosine", "n_images", "n_texts")}))
    return 0
