"""Held-out evaluation of the frozen report labeller: per-finding precision, recall, F1 and Cohen's kappa.

Two references:

* **IU MeSH major terms** (``text/iu_reports.csv``), per report split. The rules were written reading
  *train* reports, but several documented choices were then checked against MeSH on all 3,955 reports
  (test included), so no IU split is strictly unseen: *val* and *test* are the best available statements
  and are reported as such (``RULES_HISTORY``).
* **Hand labels of covid clinical notes** (``labeller_hand_labels.csv`` next to this module): 50 distinct
  notes of ``source=covid``, ``split=train`` (sorted sha256 of the stripped note, ``random.Random(0).sample``),
  labelled by an AI engineer of this project reading each note, before running the labeller on them.
  Guideline: 1 = the note affirms the finding in this patient (any modality, any time point not stated as
  resolved), -1 = hedged, 0 = otherwise; airspace / ground-glass / "hazy" opacities not named as another
  finding count as Infiltration; ``no_finding`` 1 = the note calls the chest normal. Only hashes and
  labels are committed, never the note text (shared data).

Both compare *labeller positive* (1.0) with *reference positive* (1); uncertain and negated count as not
positive on both sides.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from radclip.io.labels import REPORT_LABELS

HAND_LABELS = Path(__file__).with_name("labeller_hand_labels.csv")
RULES_HISTORY = (
    "rules written reading IU train reports; documented choices later checked against MeSH on all 3,955 "
    "reports (val and test included), so val/test are the best available held-out splits, not unseen ones"
)
HAND_LABELLER = "an AI engineer of this project, reading each note (before running the labeller on it)"


def note_hash(text: str) -> str:
    """sha256 of a note with surrounding whitespace stripped: how hand labels refer to notes."""
    return hashlib.sha256(str(text).strip().encode()).hexdigest()


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cohen's kappa of two binary raters; None when chance agreement is 1 (both constant and equal)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if len(a) == 0:
        return None
    po = float((a == b).mean())
    pe = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    return None if pe >= 1 else (po - pe) / (1 - pe)


def binary_agreement(pred: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """Counts, precision, recall, F1 and kappa of ``pred`` against ``ref`` (both boolean)."""
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    tp, fp, fn = int((pred & ref).sum()), int((pred & ~ref).sum()), int((~pred & ref).sum())
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {
        "reference_pos": tp + fn,
        "labeller_pos": tp + fp,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": int((~pred & ~ref).sum()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "kappa": cohen_kappa(pred, ref),
    }


def agreement_by_label(labeller: np.ndarray, reference: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per REPORT_LABELS column: labeller == 1 against reference == 1."""
    return {
        name: binary_agreement(labeller[:, j] == 1, reference[:, j] == 1)
        for j, name in enumerate(REPORT_LABELS)
    }


def mesh_evaluation(iu_csv: str | Path, splits: tuple[str, ...] = ("val", "test")) -> dict[str, Any]:
    """The labeller against IU MeSH major terms, per report split."""
    from radclip.io.reports import ReportCorpus

    out: dict[str, Any] = {"reference": "IU MeSH major terms (io.reports.MESH_TERMS)", "rules": RULES_HISTORY}
    for split in splits:
        corpus = ReportCorpus(iu_csv, split=split)
        out[split] = {
            "n_reports": len(corpus),
            "per_label": agreement_by_label(corpus.labels(), corpus.mesh_labels()),
        }
    return out


def hand_label_evaluation(manifest: str | Path, hand_labels: str | Path = HAND_LABELS) -> dict[str, Any]:
    """The labeller against the hand labels, notes found in ``manifest`` by their hash."""
    import pandas as pd

    from radclip.io.labeller import label_reports

    hand = pd.read_csv(hand_labels, dtype={"note_sha256": str})
    missing_cols = [c for c in ("note_sha256", *REPORT_LABELS) if c not in hand.columns]
    if missing_cols:
        raise ValueError(
            f"{hand_labels}: missing column(s) {missing_cols}; expected note_sha256, image_id and the 15 labels"
        )
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    notes = {note_hash(r): r for r in frame["report"] if str(r).strip()}
    absent = [h for h in hand["note_sha256"] if h not in notes]
    if absent:
        raise ValueError(
            f"{len(absent)} hand-labelled note(s) not found in {manifest} (e.g. {absent[0][:16]}); "
            "pass the shared data manifest the labels were made on (version 2)"
        )
    labeller = label_reports([notes[h] for h in hand["note_sha256"]])
    reference = hand[list(REPORT_LABELS)].to_numpy(np.float32)
    return {
        "reference": f"hand labels of {len(hand)} covid train clinical notes by {HAND_LABELLER}",
        "n_notes": len(hand),
        "per_label": agreement_by_label(labeller, reference),
    }


def evaluate_labeller(iu_csv: str | Path | None, manifest: str | Path | None) -> dict[str, Any]:
    """Both evaluations (each skipped when its data is not given) and the frozen rules' fingerprint."""
    from radclip.io.labeller import FROZEN_RULES_SHA256, rules_fingerprint

    if rules_fingerprint() != FROZEN_RULES_SHA256:
        raise RuntimeError(
            "the labeller rules changed since they were frozen (rules_fingerprint() != FROZEN_RULES_SHA256); "
            "re-measure on a split the change was not tuned on, then update the frozen digest and docs/data.md"
        )
    out: dict[str, Any] = {"rules_sha256": FROZEN_RULES_SHA256}
    if iu_csv is not None:
        out["mesh"] = mesh_evaluation(iu_csv)
    if manifest is not None:
        out["covid_notes"] = hand_label_evaluation(manifest)
    return out
