"""Which images, labels and patients each zero-shot evaluation task uses, and whether training saw its label.

Tasks beyond the 14 NIH labels (definitions fixed here, documented in docs/medclip.md):

* ``pediatric_pneumonia``: ``kermany`` rows of the split; positive = ``finding`` "Pneumonia (bacterial)"
  or "Pneumonia (viral)", negative = "No finding". No Kermany image or caption is a training source
  (``train/clip_data.py`` reads NIH labels, IU reports and the manifest ``report`` column, which Kermany
  rows leave blank); the adult NIH label "Pneumonia" *is* trained, so this measures a never-labelled
  population (children aged 1-5, AP, another hospital), not a never-seen word.
* ``covid19`` (two negative sets, both reported): positives = ``hannover``, ``covid``, ``figure1`` and
  ``actualmed`` rows whose ``finding`` names COVID-19; negatives either the NIH "No Finding" rows of the
  split (``vs_nih_no_finding``: easy, and confounded by source: adult NIH scans vs COVID-era collections)
  or the other rows of the COVID-era collections with a non-COVID finding, other pneumonias and normals
  (``vs_covid_era_other``: same collections, few patients). The covid clinical notes, many of which say
  "COVID-19", are a training source of the shipped model: the task is then named *prompt transfer from
  notes*, not zero-shot (see :func:`label_kind`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

COVID_ERA = ("covid", "figure1", "actualmed", "hannover")


@dataclass(frozen=True)
class Task:
    """One binary evaluation task over rows of the combined evaluation frame."""

    name: str  # report key
    condition: str  # evaluation prompt-set condition
    rows: np.ndarray  # indices into the combined frame
    y: np.ndarray  # (len(rows),) 1 positive / 0 negative
    positives: str  # what a positive is, in words
    negatives: str  # what a negative is, in words
    triage_label: str | None = None  # the supervised triage head compared on the same images, if any


def evaluation_frame(manifest: pd.DataFrame, split: str | None) -> pd.DataFrame:
    """The manifest rows any task uses: NIH, Kermany and the COVID-era collections of ``split``."""
    frame = manifest if split is None else manifest[manifest["split"] == split]
    keep = frame["source"].isin(("nih", "kermany", *COVID_ERA))
    return frame[keep].reset_index(drop=True)


def _finding(frame: pd.DataFrame) -> pd.Series:
    if "finding" not in frame.columns:  # optional column: without it only the NIH labels can be evaluated
        return pd.Series("", index=frame.index)
    return frame["finding"].fillna("").astype(str).str.strip().str.lower()


def pediatric_pneumonia_task(frame: pd.DataFrame) -> Task | None:
    finding = _finding(frame)
    kermany = frame["source"] == "kermany"
    pos = kermany & finding.str.startswith("pneumonia")
    neg = kermany & (finding == "no finding")
    return _task("pediatric_pneumonia", "pediatric_pneumonia", pos, neg,
                 "kermany Pneumonia (bacterial) or (viral)", "kermany No finding", triage_label="Pneumonia")  # fmt: skip


def covid_tasks(frame: pd.DataFrame) -> list[Task]:
    finding = _finding(frame)
    era = frame["source"].isin(COVID_ERA)
    pos = era & finding.str.contains("covid-19", regex=False)
    nih_normal = (frame["source"] == "nih") & (pd.to_numeric(frame["no_finding"], errors="coerce") == 1)
    era_other = era & (finding != "") & ~finding.str.contains("covid", regex=False)
    tasks = [
        _task(
            "covid19_vs_nih_no_finding",
            "covid19",
            pos,
            nih_normal,
            "COVID-19 in hannover/covid/figure1/actualmed",
            "NIH No Finding (other source: confounded)",
        ),  # fmt: skip
        _task(
            "covid19_vs_covid_era_other",
            "covid19",
            pos,
            era_other,
            "COVID-19 in hannover/covid/figure1/actualmed",
            "non-COVID findings and normals of the same collections",
        ),  # fmt: skip
    ]
    return [t for t in tasks if t is not None]


def _task(
    name: str,
    condition: str,
    pos: pd.Series,
    neg: pd.Series,
    pos_txt: str,
    neg_txt: str,
    triage_label: str | None = None,
) -> Task | None:
    rows = np.flatnonzero((pos | neg).to_numpy())
    if (
        not pos.any()
    ):  # the condition is absent from the split: no task (without negatives it is kept, unmeasured)
        return None
    return Task(
        name, condition, rows, pos.to_numpy()[rows].astype(np.float64), pos_txt, neg_txt, triage_label
    )


def label_kind(task: Task, training_text: str) -> str:
    """``zero_shot``, or ``prompt_transfer_from_notes`` when the model's training sources carry the condition.

    ``training_text`` is the card's ``source`` + ``training_data``: a card that names the covid notes as
    a source (or does not say) is treated as having seen the word COVID-19.
    """
    text = training_text.lower()
    if task.condition == "covid19" and ("covid" in text or not text.strip()):
        return "prompt_transfer_from_notes"
    if task.condition == "pediatric_pneumonia" and "kermany" in text:
        return "trained_on_this_source"
    return "zero_shot"


def triage_logits(
    frame: pd.DataFrame, images_root: str, model_name: str, batch_size: int = 64
) -> tuple[np.ndarray, list[str]] | None:
    """The supervised triage model's logits (N, 14) on ``frame``'s images, with its label names; None if not shipped."""
    import torch

    from radclip.eval.triage_eval import collect_logits
    from radclip.io.datasets import ManifestDataset
    from radclip.models.registry import load_pretrained
    from radclip.models.weights import WeightsError

    try:
        model, card = load_pretrained(model_name)
    except WeightsError:
        return None
    ds = ManifestDataset(frame, images_root, size=card.preprocessing.input_size)
    with torch.inference_mode():
        preds = collect_logits(model, ds, card.preprocessing, batch_size=batch_size)
    return preds.logits, list(card.labels)


def task_meta(task: Task, kind: str) -> dict[str, Any]:
    return {
        "condition": task.condition,
        "kind": kind,
        "positives": task.positives,
        "negatives": task.negatives,
    }
