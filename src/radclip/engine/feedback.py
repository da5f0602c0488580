"""Radiologist-confirmed findings per study: stored once per (study, reader); a re-send updates or is a no-op.

A study's label for a finding is the readers' majority; a tie is unknown (NaN), so a disputed case
neither helps nor hurts a model's live AUC.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import numpy as np
from sqlalchemy import DateTime, String, Text, UniqueConstraint, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from radclip.engine import db


class FeedbackRow(db.Base):
    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("study_key", "reader"),)
    id: Mapped[int] = mapped_column(db.BigId, primary_key=True, autoincrement=True)
    study_key: Mapped[str] = mapped_column(String(128))
    reader: Mapped[str] = mapped_column(String(128))
    patient_key: Mapped[str | None] = mapped_column(String(128), nullable=True)  # bootstrap groups by patient
    findings: Mapped[str] = mapped_column(Text)  # JSON {label: 0 | 1}, sorted keys
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


@dataclass(frozen=True)
class StudyLabels:
    """Per-study majority labels, aligned: ``labels[i, k]`` is 1, 0 or NaN for ``study_keys[i]`` and ``names[k]``."""

    study_keys: list[str]
    patients: list[str]
    names: list[str]
    labels: np.ndarray

    def as_mapping(self) -> dict[str, dict[str, float]]:
        """``{study_key: {finding: 1.0 | 0.0 | nan}}``."""
        return {k: dict(zip(self.names, map(float, row), strict=True)) for k, row in zip(self.study_keys, self.labels, strict=True)}


class FeedbackStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = db.session_factory(engine)

    def put(
        self, study_key: str, reader: str, findings: dict[str, bool], patient_key: str | None = None
    ) -> str:
        """Store one reader's findings for a study: ``"created"``, ``"updated"`` or ``"unchanged"``."""
        blob = json.dumps({k: int(bool(v)) for k, v in findings.items()}, sort_keys=True)
        now = db.utcnow()
        with self._session() as s, s.begin():
            q = select(FeedbackRow).where(FeedbackRow.study_key == study_key, FeedbackRow.reader == reader)
            row = s.scalars(q).one_or_none()
            if row is None:
                s.add(FeedbackRow(study_key=study_key, reader=reader, patient_key=patient_key, findings=blob,
                                  created_at=now, updated_at=now))  # fmt: skip
                return "created"
            if row.findings == blob and row.patient_key == patient_key:
                return "unchanged"
            row.findings, row.patient_key, row.updated_at = blob, patient_key, now
            return "updated"

    def window(self, n_studies: int) -> StudyLabels:
        """Majority labels of the ``n_studies`` studies with the most recent feedback (the sliding window)."""
        with self._session() as s:
            rows = s.scalars(
                select(FeedbackRow).order_by(FeedbackRow.updated_at.desc(), FeedbackRow.id.desc())
            ).all()
        votes: dict[str, dict[str, list[int]]] = {}
        patients: dict[str, str] = {}
        for r in rows:
            if r.study_key not in votes and len(votes) >= n_studies:
                continue
            per = votes.setdefault(r.study_key, {})
            patients.setdefault(r.study_key, r.patient_key or r.study_key)
            for name, v in json.loads(r.findings).items():
                per.setdefault(name, []).append(int(v))
        keys = list(votes)
        names = sorted({n for per in votes.values() for n in per})
        labels = np.full((len(keys), len(names)), np.nan)
        for i, k in enumerate(keys):
            for j, n in enumerate(names):
                v = votes[k].get(n)
                if v:
                    mean = sum(v) / len(v)
                    labels[i, j] = np.nan if mean == 0.5 else float(mean > 0.5)
        return StudyLabels(keys, [patients[k] for k in keys], names, labels)
