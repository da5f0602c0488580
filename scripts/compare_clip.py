"""Compare two image-text models on the same images: paired patient bootstrap of the prompt-transfer AUC
(14 NIH findings, frozen evaluation prompt set) per finding and for the mean, and of the Kermany
pediatric pneumonia zero-shot AUC.

    .venv/bin/python scripts/compare_clip.py NEW OLD [--split test] [--out PATH]

NEW / OLD: shipped names, weight files or .card.json paths (``load_pretrained`` accepts each). Used for the
models-v2 release note (docs/medclip.md). Scores are cos(img, positive prompts) - cos(img, negative
prompts), exactly as ``radclip eval zeroshot`` computes them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from radclip.eval.metrics import paired_auc_difference
from radclip.eval.patient_bootstrap import paired_mean_diff
from radclip.eval.retrieval import embed_images, embed_texts
from radclip.eval.zeroshot import eval_set_embeddings, zeroshot_scores
from radclip.eval.zeroshot_cohorts import pediatric_pneumonia_task
from radclip.io.datasets import ManifestDataset
from radclip.io.labels import NIH_LABELS
from radclip.io.manifest import data_snapshot, read_manifest
from radclip.models.registry import load_pretrained
from radclip.settings import get_settings


def scores(name: str, frame, root: Path, conditions: list[str]) -> tuple[np.ndarray, str]:  # type: ignore[no-untyped-def]
    """(N, K) zero-shot scores of ``conditions`` for every row of ``frame``, and the model's name@version."""
    model, card = load_pretrained(name)
    ds = ManifestDataset(frame, root, size=model.preprocessing.input_size)
    img = embed_images(model, np.stack([ds.image(i) for i in range(len(ds))]))
    pos, neg = eval_set_embeddings(lambda t: embed_texts(model, t), conditions)
    return zeroshot_scores(img, pos, neg), f"{card.name} {card.version}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("new")
    parser.add_argument("old")
    parser.add_argument("--split", default="test")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    manifest = get_settings().cxr_root / "manifest.csv"
    frame = read_manifest(manifest)
    frame = frame[frame["split"] == args.split].reset_index(drop=True)
    out: dict = {"split": args.split, "data_snapshot": data_snapshot(manifest), "n_boot": args.n_boot,
                 "what": "prompt transfer: the 14 NIH findings scored with the frozen evaluation prompt set"}  # fmt: skip
    nih = frame[frame["source"] == "nih"].reset_index(drop=True)
    names = list(NIH_LABELS)
    a, name_a = scores(args.new, nih, manifest.parent, names)
    b, name_b = scores(args.old, nih, manifest.parent, names)
    y = nih[names].to_numpy(dtype=float)
    pids = nih["patient_id"].to_numpy()
    out["models"] = {"new": name_a, "old": name_b}
    out["per_label"] = {n: paired_auc_difference(y[:, k], a[:, k], b[:, k], pids, n_boot=args.n_boot, seed=k)
                        for k, n in enumerate(names)}  # fmt: skip
    cols = [k for k, n in enumerate(names) if out["per_label"][n]["measurable"]]
    out["mean_auc"] = {"new": float(np.mean([out["per_label"][names[k]]["auc_a"] for k in cols])),
                       "old": float(np.mean([out["per_label"][names[k]]["auc_b"] for k in cols])),
                       "paired_diff": paired_mean_diff(y, a, b, pids, cols, n_boot=args.n_boot)}  # fmt: skip
    task = pediatric_pneumonia_task(frame)
    if task is not None:
        kids = frame.iloc[task.rows].reset_index(drop=True)
        ka, _ = scores(args.new, kids, manifest.parent, [task.condition])
        kb, _ = scores(args.old, kids, manifest.parent, [task.condition])
        out["kermany_pediatric_pneumonia"] = {
            "what": "true zero-shot (never labelled in training): Kermany pneumonia vs no finding",
            **paired_auc_difference(task.y, ka[:, 0], kb[:, 0], kids["patient_id"].to_numpy(), n_boot=args.n_boot, seed=100),
        }  # fmt: skip
    text = json.dumps(out, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    brief = {"mean_auc": out["mean_auc"], "kermany": {k: out.get("kermany_pediatric_pneumonia", {}).get(k) for k in ("auc_a", "auc_b", "diff", "ci_low", "ci_high")}}
    print(json.dumps(brief, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
