"""The review log of a failed scheduled validation: the images behind each failing finding, with their embeddings and scores.

When the scheduled gate fails on a finding (concept drift), a radiologist reviews the cases that
decide that finding's AUC: its labelled **positives**, and as many **top-scored negatives** (the
candidate's strongest false-positive side). For each such image the folder keeps

* ``embeddings.safetensors``: ``image_embeddings`` (N, D) image-text embeddings, ``triage_logits`` and
  ``zeroshot_scores`` (N, K) and ``labels`` (N, K, NaN = unknown), one row per unique image; the
  metadata names the K findings and the N image ids;
* ``cases.csv``: one row per (image, failing finding): ``embedding_row`` (row in the safetensors
  file), image id, patient, manifest path, model, finding, role, label, baseline and current score.

Nothing here trains or changes a model: the folder is evidence for people (regulatory constraint).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The gate's model names (rows "triage AUC X" / "zero-shot AUC X") and the evidence arrays they score with.
SCORE_KIND = {"triage": "triage", "zero-shot": "zeroshot"}
CASE_COLUMNS = (
    "embedding_row",
    "image_id",
    "patient_id",
    "path",
    "model",
    "finding",
    "role",
    "label",
    "baseline_score",
    "current_score",
)


@dataclass
class FindingFailure:
    """One finding the gate failed on (a significant AUC drop, or missing / unmeasurable in the candidate)."""

    model: str  # "triage" | "zero-shot"
    finding: str  # e.g. "Effusion"
    baseline_auc: float | None  # the baseline's AUC
    current_auc: float | None  # this run's AUC (None = missing)
    note: str  # the gate's note, e.g. "drop +0.031, 95% CI +0.012..+0.050 (> 0.02, CI excludes 0)"

    @property
    def drop(self) -> float | None:
        if self.baseline_auc is None or self.current_auc is None:
            return None
        return float(self.baseline_auc) - float(self.current_auc)

    def to_dict(self) -> dict[str, object]:
        drop = self.drop
        return {"model": self.model, "finding": self.finding, "baseline_auc": self.baseline_auc, "current_auc": self.current_auc,
                "auc_drop": None if drop is None else round(drop, 6), "note": self.note}  # fmt: skip


@dataclass
class ReviewEvidence:
    """Row-aligned outputs of one validation pass over the labelled rows (row i = the same image everywhere)."""

    names: list[str]  # the K findings, column order of every (N, K) array
    image_ids: list[str]  # (N,)
    patients: list[str]  # (N,)
    paths: list[str]  # (N,) manifest paths, relative to the images root
    labels: np.ndarray  # (N, K) 1 / 0 / NaN (unknown)
    triage: np.ndarray  # (N, K) this run's triage logits
    zeroshot: np.ndarray  # (N, K) this run's zero-shot scores
    embeddings: np.ndarray  # (N, D) this run's L2-normalised image-text embeddings
    baseline_triage: np.ndarray | None = None  # (N, K) the baseline's stored scores, when aligned
    baseline_zeroshot: np.ndarray | None = None

    def scores(self, model: str, baseline: bool = False) -> np.ndarray | None:
        kind = SCORE_KIND[model]
        if baseline:
            return self.baseline_triage if kind == "triage" else self.baseline_zeroshot
        return self.triage if kind == "triage" else self.zeroshot


def affected_cases(evidence: ReviewEvidence, failure: FindingFailure) -> list[tuple[int, str]]:
    """(evidence row, role) of the images behind one failing finding: its positives, then as many top-scored negatives."""
    if failure.finding not in evidence.names or failure.model not in SCORE_KIND:
        return []
    k = evidence.names.index(failure.finding)
    y = evidence.labels[:, k]
    scores = evidence.scores(failure.model)
    assert scores is not None
    pos = np.flatnonzero(y == 1)
    neg = np.flatnonzero(y == 0)
    s = np.where(np.isfinite(scores[neg, k]), scores[neg, k], -np.inf)
    top_neg = neg[np.argsort(-s, kind="stable")[: len(pos)]]
    return [(int(i), "positive") for i in pos] + [(int(i), "top-scored negative") for i in top_neg]


def _score(a: np.ndarray | None, row: int, k: int) -> str:
    if a is None or not np.isfinite(a[row, k]):
        return ""
    return f"{float(a[row, k]):.6g}"


def write_review(evidence: ReviewEvidence, failures: list[FindingFailure], out_dir: Path) -> Path | None:
    """Write the folder for ``failures`` into ``out_dir`` (created); None when no failing finding names labelled images."""
    from safetensors.numpy import save_file

    cases = [(f, row, role) for f in failures for row, role in affected_cases(evidence, f)]
    if not cases:
        return None
    images = list(dict.fromkeys(row for _, row, _ in cases))  # unique, in first-seen order
    where = {row: i for i, row in enumerate(images)}
    out_dir.mkdir(parents=True, exist_ok=True)
    idx = np.asarray(images)
    tensors = {
        "image_embeddings": np.ascontiguousarray(evidence.embeddings[idx], dtype=np.float32),
        "triage_logits": np.ascontiguousarray(evidence.triage[idx], dtype=np.float32),
        "zeroshot_scores": np.ascontiguousarray(evidence.zeroshot[idx], dtype=np.float32),
        "labels": np.ascontiguousarray(evidence.labels[idx], dtype=np.float32),
    }
    meta = {"names": json.dumps(evidence.names), "image_ids": json.dumps([evidence.image_ids[i] for i in images]),
            "failing_findings": json.dumps([f"{f.model}/{f.finding}" for f in failures])}  # fmt: skip
    save_file(tensors, str(out_dir / "embeddings.safetensors"), metadata=meta)
    with (out_dir / "cases.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CASE_COLUMNS)
        for f, row, role in cases:
            k = evidence.names.index(f.finding)
            label = evidence.labels[row, k]
            w.writerow([where[row], evidence.image_ids[row], evidence.patients[row], evidence.paths[row], f.model, f.finding, role,
                        "" if not np.isfinite(label) else int(label), _score(evidence.scores(f.model, baseline=True), row, k),
                        _score(evidence.scores(f.model), row, k)])  # fmt: skip
    return out_dir
