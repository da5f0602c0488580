"""Predictions the service made, per study and model version: what answered (production or canary) and what shadowed.

Written off the request path by the lifecycle's shadow worker; read by the feedback monitor, which
joins them with radiologist-confirmed findings to compute each version's live AUC on the same studies.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import DateTime, String, Text, UniqueConstraint, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from radclip.engine import db

ROLES = ("production", "canary", "shadow")


class ServedPrediction(db.Base):
    __tablename__ = "served_predictions"
    __table_args__ = (UniqueConstraint("study_key", "model_name", "model_version", "role"),)
    id: Mapped[int] = mapped_column(db.BigId, primary_key=True, autoincrement=True)
    study_key: Mapped[str] = mapped_column(String(128), index=True)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    scores: Mapped[str] = mapped_column(Text)  # JSON {label: probability}
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Prediction:
    study_key: str
    model_name: str
    model_version: str
    role: str  # production | canary (answered) or shadow (logged only)
    scores: dict[str, float]

    @property
    def ref(self) -> str:
        return f"{self.model_name}@{self.model_version}"


class PredictionLog:
    """Append predictions (a repeat of the same study, version and role keeps the first) and read them by study."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = db.session_factory(engine)

    def record(self, predictions: list[Prediction]) -> None:
        rows = [{"study_key": p.study_key, "model_name": p.model_name, "model_version": p.model_version, "role": p.role,
                 "scores": json.dumps(p.scores, sort_keys=True), "at": db.utcnow()} for p in predictions]  # fmt: skip
        if not rows:
            return
        dialect = self.engine.dialect.name
        insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(dialect)
        with self.engine.begin() as conn:
            if insert is not None:  # a re-sent study must not fail the worker: keep the first row
                conn.execute(insert(ServedPrediction).on_conflict_do_nothing(), rows)
            else:
                conn.execute(ServedPrediction.__table__.insert(), rows)

    def for_studies(
        self, study_keys: list[str] | None = None, model_name: str | None = None
    ) -> list[Prediction]:
        q = select(ServedPrediction).order_by(ServedPrediction.id)
        if study_keys is not None:
            q = q.where(ServedPrediction.study_key.in_(study_keys))
        if model_name is not None:
            q = q.where(ServedPrediction.model_name == model_name)
        with self._session() as s:
            return [Prediction(r.study_key, r.model_name, r.model_version, r.role, json.loads(r.scores))
                    for r in s.scalars(q).all()]  # fmt: skip

    def recent(self, n_studies: int) -> list[Prediction]:
        """Every prediction of the ``n_studies`` most recently logged studies, in log order."""
        newest = func.max(ServedPrediction.id)
        q = select(ServedPrediction.study_key).group_by(ServedPrediction.study_key).order_by(newest.desc()).limit(n_studies)
        with self._session() as s:
            keys = list(s.scalars(q).all())
        return self.for_studies(keys) if keys else []
