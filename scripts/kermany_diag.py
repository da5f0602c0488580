"""Diagnose pediatric pneumonia zero-shot on the Kermany VAL split: the score and its two halves, per model.

Usage: ``.venv/bin/python scripts/kermany_diag.py MODEL [MODEL ...] [--out diag.json]`` (a MODEL is a registered
name or a ``.card.json`` / ``.safetensors`` path). For each model it prints the zero-shot AUC of
cos(img, pos) − cos(img, neg), of cos(img, pos) alone, and of −cos(img, neg) alone, on val only (never test).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from radclip.eval.metrics import auc_with_ci
from radclip.eval.retrieval import embed_images, embed_texts
from radclip.eval.zeroshot import eval_set_embeddings, zeroshot_scores
from radclip.eval.zeroshot_cohorts import pediatric_pneumonia_task
from radclip.io.datasets import ManifestDataset
from radclip.io.manifest import read_manifest
from radclip.models.registry import load_pretrained
from radclip.settings import get_settings


def _auc(y: np.ndarray, s: np.ndarray, groups: np.ndarray) -> float:
    return auc_with_ci(y, s, groups, n_boot=0).to_dict()["auc"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--manifest", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    manifest = args.manifest or get_settings().cxr_root / "manifest.csv"
    frame = read_manifest(manifest)
    frame = frame[frame["split"] == "val"].reset_index(drop=True)
    task = pediatric_pneumonia_task(frame)
    kids = frame.iloc[task.rows].reset_index(drop=True)
    groups = kids["patient_id"].to_numpy()
    images: dict[int, np.ndarray] = {}
    out = {}
    for name in args.models:
        model, _ = load_pretrained(name)
        size = model.preprocessing.input_size
        if size not in images:
            ds = ManifestDataset(kids, manifest.parent, size=size)
            images[size] = np.stack([ds.image(i) for i in range(len(ds))])
        img = embed_images(model, images[size])
        pos, neg = eval_set_embeddings(lambda t, m=model: embed_texts(m, t), [task.condition])
        out[name] = {
            "auc": _auc(task.y, zeroshot_scores(img, pos, neg)[:, 0], groups),
            "auc_pos_only": _auc(task.y, img @ pos[0], groups),
            "auc_neg_only": _auc(task.y, -(img @ neg[0]), groups),
        }
        print(name, out[name], flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
