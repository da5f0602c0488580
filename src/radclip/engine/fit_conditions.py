"""Fit per-condition calibrations from a labelled manifest split: which rows label which condition.

``radclip conditions calibrate --manifest CSV --split val`` embeds the split's images with the
image model and fits one logistic per registered condition that has labels (see
:func:`radclip.engine.calibration.fit_calibration`; a fit needs >= 5 positive and >= 5 negative
*patients*), storing the fits keyed by condition version and both model versions.
``--ship`` writes them beside the model's weights instead (see ``docs/engine.md``).

Labels per condition (:func:`condition_labels`), 1 / 0 / NaN (unknown, not used):

* the 14 NIH findings: the manifest's columns (NIH rows; -1 "uncertain" is unknown);
* ``no_finding``: its column on adult sources (every source except ``kermany``, which has its own
  condition);
* ``covid19_pneumonia_pattern``: positive where the source's ``finding`` names COVID-19 (covid,
  figure1, actualmed, hannover); negative for every NIH row (ChestX-ray14 was collected 1992–2015,
  before COVID-19 existed) and for covid/figure1/actualmed rows whose finding names something else
  (other pneumonias, ARDS, no finding); blank findings are unknown; Kermany (children) is left out;
* ``pediatric_pneumonia``: Kermany rows, ``Pneumonia (bacterial|viral)`` vs ``No finding``
  (fitted only when a condition of that name is registered).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from radclip.engine.calibration import LogisticCalibration
from radclip.engine.encoders import ImageEmbedder
from radclip.engine.screening import Screener

if TYPE_CHECKING:
    import pandas as pd

LABEL_COLUMNS_NO_FINDING = "no_finding"
COVID = "covid19_pneumonia_pattern"
PEDIATRIC_PNEUMONIA = "pediatric_pneumonia"
COVID_POSITIVE_SOURCES = ("covid", "figure1", "actualmed", "hannover")
COVID_NEGATIVE_SOURCES = (
    "covid",
    "figure1",
    "actualmed",
)  # their non-COVID findings are confirmed other diagnoses


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    import pandas as pd

    return pd.to_numeric(frame[name], errors="coerce").to_numpy(np.float64, copy=True)


def condition_labels(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per condition name, one 1/0/NaN label per manifest row (the rules in the module docstring)."""
    from radclip.io.labels import NIH_LABELS

    source = frame["source"].astype(str).to_numpy() if "source" in frame.columns else np.full(len(frame), "")
    finding = (
        frame["finding"].fillna("").astype(str).to_numpy()
        if "finding" in frame.columns
        else np.full(len(frame), "")
    )
    out = {name: _column(frame, name) for name in NIH_LABELS}
    for col in out.values():
        col[col < 0] = np.nan  # uncertain is unknown for fitting
    no_finding = _column(frame, LABEL_COLUMNS_NO_FINDING)
    no_finding[source == "kermany"] = np.nan
    out[LABEL_COLUMNS_NO_FINDING] = no_finding
    is_covid = np.char.find(np.char.lower(finding.astype(str)), "covid-19") >= 0
    covid = np.full(len(frame), np.nan)
    covid[np.isin(source, COVID_NEGATIVE_SOURCES) & (finding != "") & ~is_covid] = 0.0
    covid[source == "nih"] = 0.0
    covid[np.isin(source, COVID_POSITIVE_SOURCES) & is_covid] = 1.0
    out[COVID] = covid
    kermany = np.full(len(frame), np.nan)
    kermany[(source == "kermany") & np.char.startswith(finding.astype(str), "Pneumonia")] = 1.0
    kermany[(source == "kermany") & (np.char.lower(finding.astype(str)) == "no finding")] = 0.0
    out[PEDIATRIC_PNEUMONIA] = kermany
    return out


def labelled_rows(frame: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(row indices with any label, their (n, K) labels, the condition names kept) for registered ``names``."""
    labels = condition_labels(frame)
    kept = [n for n in labels if n in set(names)]
    if not kept:
        return np.zeros(0, int), np.zeros((0, 0)), []
    matrix = np.stack([labels[n] for n in kept], axis=1)
    rows = np.flatnonzero(~np.isnan(matrix).all(axis=1))
    return rows, matrix[rows], kept


def fit_on_embeddings(screener: Screener, embs: np.ndarray, frame: pd.DataFrame,
                      persist: bool = True) -> dict[str, LogisticCalibration]:  # fmt: skip
    """Fit the registered conditions that have labels in ``frame`` (row-aligned with ``embs``)."""
    rows, labels, kept = labelled_rows(frame, screener.matrix().names)
    if not len(rows):
        raise ValueError(
            "these manifest rows label none of the registered conditions; calibrate on a split with labels (e.g. --split val)"
        )
    patients = frame["patient_id"].astype(str).to_numpy()[rows] if "patient_id" in frame.columns else None
    return screener.fit_calibration(embs[rows], labels, kept, persist=persist, patients=patients)


def fit_from_manifest(screener: Screener, image_embedder: ImageEmbedder, manifest: Path, images_root: Path,
                      split: str = "val", size: int = 224, batch: int = 32) -> dict[str, LogisticCalibration]:  # fmt: skip
    """Embed the labelled rows of ``split`` and fit (and store) the registered conditions with labels."""
    from radclip.io.datasets import ManifestDataset

    if split == "test":
        raise ValueError("calibrations are never fitted on the test split; use --split val")
    ds = ManifestDataset(manifest, images_root, split=split, size=size)
    rows, _, kept = labelled_rows(ds.frame, screener.matrix().names)
    if not len(rows):
        raise ValueError(f"split {split!r} of {manifest} has no labelled rows for the registered conditions; "
                         "calibrate on a split with labels (e.g. --split val)")  # fmt: skip
    embs = np.zeros((len(ds), image_embedder.dim), np.float32)
    for k in range(0, len(rows), batch):
        chunk = rows[k : k + batch]
        embs[chunk] = image_embedder.encode_images(np.stack([ds.image(int(i)) for i in chunk]))
    return fit_on_embeddings(screener, embs, ds.frame, persist=True)


def patient_counts(frame: pd.DataFrame, names: list[str]) -> dict[str, dict[str, int]]:
    """Positive and negative patients behind each named condition's labels in ``frame`` (recorded with shipped fits)."""
    labels = condition_labels(frame)
    pids = frame["patient_id"].astype(str).to_numpy()
    return {
        n: {
            "n_pos_patients": len(set(pids[labels[n] == 1])),
            "n_neg_patients": len(set(pids[labels[n] == 0])),
        }
        for n in names
    }
