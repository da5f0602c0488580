"""The IU / OpenI report corpus (``text/iu_reports.csv``): text-only, no images.

Each item: ``report_id``, ``text`` (findings + impression, cleaned of the ``XXXX``
de-identification tokens), ``indication``, ``mesh`` (the report's major MeSH terms, a list)
and ``split``. ``labels()`` runs the rule-based labeller over ``text``; ``mesh_labels()``
maps the human-assigned MeSH terms onto the same 15 REPORT_LABELS, as a reference for it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from radclip.io.labels import NEGATIVE, POSITIVE, REPORT_LABELS

if TYPE_CHECKING:
    import pandas as pd

REQUIRED = ("report_id", "findings", "impression", "indication", "mesh_major", "split")
# REPORT_LABELS name -> MeSH major headings that mean "present". A "Heading/qualifier" entry
# needs that qualifier too (MeSH "Thickening" is only pleural with "/pleura").
MESH_TERMS: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("Pulmonary Atelectasis",),
    "Cardiomegaly": ("Cardiomegaly",),
    "Effusion": ("Pleural Effusion",),
    "Infiltration": ("Infiltrate",),
    "Mass": ("Mass",),
    "Nodule": ("Nodule",),
    "Pneumonia": ("Pneumonia",),
    "Pneumothorax": ("Pneumothorax",),
    "Consolidation": ("Consolidation",),
    "Edema": ("Pulmonary Edema",),
    "Emphysema": ("Emphysema", "Pulmonary Emphysema", "Pulmonary Disease, Chronic Obstructive"),
    "Fibrosis": ("Pulmonary Fibrosis",),
    "Pleural_Thickening": ("Thickening/pleura",),
    "Hernia": ("Hernia, Hiatal",),
    "no_finding": ("normal",),
}

_X_RAY = re.compile(r"\bx-XXXX\b", re.IGNORECASE)
_XXXX = re.compile(r"X{3,}")  # also glued forms: "XXXXPM", "3rd-5XXXX"


def clean_report_text(text: str) -> str:
    """Drop the ``XXXX`` de-identification tokens ("x-XXXX" becomes "x-ray") and tidy spaces and punctuation."""
    text = _X_RAY.sub("x-ray", text or "")
    text = _XXXX.sub(" ", text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,.;:])", r"\1", text)  # "lungs have , in" -> "lungs have, in"
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)
    text = re.sub(r"(?<=[.;])\s*[,;]", "", text)
    return text.strip()


def mesh_terms(mesh_major: str) -> list[str]:
    """The ``;``-separated MeSH major terms of one report, stripped."""
    return [t.strip() for t in (mesh_major or "").split(";") if t.strip()]


def mesh_present(terms: Sequence[str], wanted: Sequence[str]) -> bool:
    """Whether any term matches one of ``wanted`` (heading, or heading/qualifier)."""
    for term in terms:
        parts = [p.strip() for p in term.split("/")]
        for w in wanted:
            head, _, qualifier = w.partition("/")
            if parts[0] == head and (not qualifier or qualifier in parts[1:]):
                return True
    return False


class ReportCorpus:
    """IU reports from ``csv_path``, optionally one split or several."""

    def __init__(self, csv_path: str | Path, split: str | Sequence[str] | None = None) -> None:
        import pandas as pd

        path = Path(csv_path)
        if not path.is_file():
            raise FileNotFoundError(f"report corpus not found: {path} (expected data_root/text/iu_reports.csv; set RADCLIP_DATA_ROOT)")
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        missing = [c for c in REQUIRED if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; expected the IU report CSV with {', '.join(REQUIRED)}")
        frame = frame.fillna("")
        if split is not None:
            wanted = [split] if isinstance(split, str) else list(split)
            unknown = sorted(set(wanted) - set(frame["split"]))
            if unknown:
                raise ValueError(f"split(s) {unknown} not in {path}; it has {sorted(set(frame['split']))}")
            frame = frame[frame["split"].isin(wanted)]
        text = (frame["findings"].str.strip() + " " + frame["impression"].str.strip()).map(clean_report_text)
        self._frame = frame.assign(text=text).reset_index(drop=True)
        self._labels: np.ndarray | None = None

    @property
    def frame(self) -> pd.DataFrame:
        """The rows, with the cleaned ``text`` column added."""
        return self._frame

    def __len__(self) -> int:
        return len(self._frame)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self._frame.iloc[index]
        return {
            "report_id": row["report_id"],
            "text": row["text"],
            "indication": clean_report_text(row["indication"]),
            "mesh": mesh_terms(row["mesh_major"]),
            "split": row["split"],
        }

    @property
    def texts(self) -> list[str]:
        return self._frame["text"].tolist()

    def labels(self) -> np.ndarray:
        """(N, 15) float32 labeller output over ``text``, REPORT_LABELS order; computed once per corpus."""
        if self._labels is None:
            from radclip.io.labeller import label_reports

            self._labels = label_reports(self.texts)
        return self._labels

    def mesh_labels(self) -> np.ndarray:
        """(N, 15) float32 reference from MeSH major terms: 1 where a mapped term is present, else 0."""
        terms = [mesh_terms(m) for m in self._frame["mesh_major"]]
        out = [[POSITIVE if mesh_present(t, MESH_TERMS[name]) else NEGATIVE for name in REPORT_LABELS] for t in terms]
        return np.asarray(out, dtype=np.float32).reshape(-1, len(REPORT_LABELS))


def agreement_table(predicted: np.ndarray, reference: np.ndarray) -> list[dict[str, float | int | str]]:
    """Per REPORT_LABELS column: labeller positive (== 1) against reference positive (== 1).

    ``recall_pos_or_unc`` also counts an uncertain (-1) labeller output as a hit.
    """
    rows: list[dict[str, float | int | str]] = []
    for j, name in enumerate(REPORT_LABELS):
        ref = reference[:, j] == POSITIVE
        pos = predicted[:, j] == POSITIVE
        hit_u = pos | (predicted[:, j] == -1.0)
        tp = int((pos & ref).sum())
        rows.append({
            "label": name,
            "reference_pos": int(ref.sum()),
            "labeller_pos": int(pos.sum()),
            "labeller_unc": int((predicted[:, j] == -1.0).sum()),
            "precision": tp / max(int(pos.sum()), 1),
            "recall": tp / max(int(ref.sum()), 1),
            "recall_pos_or_unc": int((hit_u & ref).sum()) / max(int(ref.sum()), 1),
            "agreement": float((pos == ref).mean()) if len(ref) else float("nan"),
        })
    return rows
