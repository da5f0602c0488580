"""Compare two triage models on the same images: paired patient bootstrap per finding and for the mean AUC,
plus the pediatric pneumonia AUC of each one's Pneumonia head on the Kermany split (its own line).

    .venv/bin/python scripts/compare_triage.py NEW OLD [--split test] [--out PATH]

NEW / OLD: shipped names or .card.json paths. Used for the models-v2 release note (docs/triage.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from radclip.eval.metrics import auc_with_ci, paired_auc_difference
from radclip.eval.patient_bootstrap import paired_mean_diff
from radclip.eval.triage_eval import collect_logits
from radclip.io.datasets import ManifestDataset
from radclip.io.labels import NIH_LABELS
from radclip.io.manifest import data_snapshot, read_manifest
from radclip.models.registry import load_pretrained
from radclip.settings import get_settings


def logits(name: str, frame, root: Path):  # type: ignore[no-untyped-def]
    model, card = load_pretrained(name)
    ds = ManifestDataset(frame, root, size=card.preprocessing.input_size)
    return collect_logits(model, ds, card.preprocessing).logits, card


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
    out: dict = {"split": args.split, "data_snapshot": data_snapshot(manifest), "n_boot": args.n_boot}
    nih = frame[frame["source"] == "nih"].reset_index(drop=True)
    a, card_a = logits(args.new, nih, manifest.parent)
    b, card_b = logits(args.old, nih, manifest.parent)
    y = nih[list(NIH_LABELS)].to_numpy(dtype=float)
    pids = nih["patient_id"].to_numpy()
    out["models"] = {"new": f"{card_a.name} {card_a.version}", "old": f"{card_b.name} {card_b.version}"}
    out["per_label"] = {n: paired_auc_difference(y[:, k], a[:, k], b[:, k], pids, n_boot=args.n_boot, seed=k) for k, n in enumerate(NIH_LABELS)}
    cols = [k for k, n in enumerate(NIH_LABELS) if out["per_label"][n]["measurable"]]
    out["mean_auc"] = {"new": float(np.mean([out["per_label"][NIH_LABELS[k]]["auc_a"] for k in cols])),
                       "old": float(np.mean([out["per_label"][NIH_LABELS[k]]["auc_b"] for k in cols])),
                       "paired_diff": paired_mean_diff(y, a, b, pids, cols, n_boot=args.n_boot)}
    kids = frame[(frame["source"] == "kermany")].reset_index(drop=True)
    finding = kids["finding"].astype(str).str.lower()
    yk = np.where(finding.str.startswith("pneumonia"), 1.0, np.where(finding.str.startswith("no finding"), 0.0, np.nan))
    if len(kids):
        p = NIH_LABELS.index("Pneumonia")
        ka, _ = logits(args.new, kids, manifest.parent)
        kb, _ = logits(args.old, kids, manifest.parent)
        kp = kids["patient_id"].to_numpy()
        out["kermany_pneumonia"] = {"new": auc_with_ci(yk, ka[:, p], kp, n_boot=args.n_boot).to_dict(), "old": auc_with_ci(yk, kb[:, p], kp, n_boot=args.n_boot).to_dict(),
                                    "what": "Pneumonia head, Kermany pediatric split: Pneumonia (bacterial or viral) vs No finding"}
    text = json.dumps(out, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(json.dumps({"mean_auc": out["mean_auc"], "kermany": {k: out.get("kermany_pneumonia", {}).get(k, {}).get("auc") for k in ("new", "old")}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
