"""The engine's database: SQLAlchemy 2.x models, engine construction and migrations.

One database holds the prompt registry (conditions, their versions, prompts, prompt
embeddings, calibrations) and the embedding index's study metadata. SQLite by default
(``sqlite:///$RADCLIP_HOME/radclip.db``), PostgreSQL with a ``postgresql://`` URL.

The schema is created by Alembic (``radclip/engine/migrations``), run in code by
:func:`migrate` — there is no ``alembic.ini``; the Config is built here.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# BIGINT ids on PostgreSQL; plain INTEGER on SQLite so the row id autoincrements.
BigId = BigInteger().with_variant(Integer, "sqlite")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


class Condition(Base):
    """One screening condition; its current definition is the row in ``condition_versions``."""

    __tablename__ = "conditions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    category: Mapped[str] = mapped_column(String(64))
    synonyms: Mapped[str] = mapped_column(Text)  # JSON list, kept as text for SQLite/PG parity
    version: Mapped[int] = mapped_column(Integer)  # current version (1-based)
    status: Mapped[str] = mapped_column(String(16), default="active")  # "active" | "retired"
    registered_by: Mapped[str] = mapped_column(String(128))  # who registered the current version
    registered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    versions: Mapped[list[ConditionVersion]] = relationship(
        back_populates="condition", order_by="ConditionVersion.version", cascade="all, delete-orphan"
    )


class ConditionVersion(Base):
    """An immutable definition of a condition; a changed prompt list makes a new one (audit trail)."""

    __tablename__ = "condition_versions"
    __table_args__ = (UniqueConstraint("condition_id", "version"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    condition_id: Mapped[int] = mapped_column(ForeignKey("conditions.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    prompts_sha256: Mapped[str] = mapped_column(String(64))  # identity of the prompt list (idempotency)
    synonyms: Mapped[str] = mapped_column(Text)  # JSON list
    category: Mapped[str] = mapped_column(String(64))
    registered_by: Mapped[str] = mapped_column(String(128))
    registered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    condition: Mapped[Condition] = relationship(back_populates="versions")
    prompts: Mapped[list[Prompt]] = relationship(order_by="Prompt.position", cascade="all, delete-orphan")


class Prompt(Base):
    __tablename__ = "prompts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    condition_version_id: Mapped[int] = mapped_column(ForeignKey("condition_versions.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(String(300))


class PromptEmbedding(Base):
    """Embeddings of one condition version under one text model: per-prompt rows and their ensemble."""

    __tablename__ = "prompt_embeddings"
    __table_args__ = (UniqueConstraint("condition_version_id", "text_version"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    condition_version_id: Mapped[int] = mapped_column(ForeignKey("condition_versions.id", ondelete="CASCADE"), index=True)
    text_version: Mapped[str] = mapped_column(String(128), index=True)
    dim: Mapped[int] = mapped_column(Integer)
    n_prompts: Mapped[int] = mapped_column(Integer)
    prompt_vectors: Mapped[bytes] = mapped_column(LargeBinary)  # float32 (n_prompts, dim), C order
    ensemble: Mapped[bytes] = mapped_column(LargeBinary)  # float32 (dim,): renormalised mean
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class Calibration(Base):
    """A logistic map from cosine to confidence, fitted for one condition version and model pair."""

    __tablename__ = "calibrations"
    __table_args__ = (UniqueConstraint("condition_version_id", "text_version", "image_version"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    condition_version_id: Mapped[int] = mapped_column(ForeignKey("condition_versions.id", ondelete="CASCADE"), index=True)
    text_version: Mapped[str] = mapped_column(String(128))
    image_version: Mapped[str] = mapped_column(String(128))
    scale: Mapped[float] = mapped_column(Float)  # p = sigmoid(scale * cosine + bias)
    bias: Mapped[float] = mapped_column(Float)
    n_pos: Mapped[int] = mapped_column(Integer)
    n_neg: Mapped[int] = mapped_column(Integer)
    fitted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class IndexItem(Base):
    """One indexed image (a study may hold several, e.g. PA and lateral); ``id`` is its FAISS vector id."""

    __tablename__ = "index_items"
    # AUTOINCREMENT on SQLite: ids are FAISS ids and must never be reused after a delete.
    __table_args__ = (
        UniqueConstraint("index_key", "instance_id", name="uq_index_items_instance"),
        Index("ix_index_items_study", "index_key", "study_id"),
        {"sqlite_autoincrement": True},
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    index_key: Mapped[str] = mapped_column(String(200), index=True)  # snapshot + image-model key
    study_id: Mapped[str] = mapped_column(String(200))
    instance_id: Mapped[str] = mapped_column(String(200))  # SOP Instance UID (or the study id for one-image studies)
    patient_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    view: Mapped[str | None] = mapped_column(String(16), nullable=True)
    study_date: Mapped[str | None] = mapped_column(String(32), nullable=True)
    findings: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)
    image_path: Mapped[str] = mapped_column(Text)
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


def normalise_url(url: str) -> str:
    """Use the psycopg (v3) driver for plain ``postgresql://`` URLs (SQLAlchemy defaults to psycopg2)."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """Build an engine for ``url`` (default: settings' database URL); creates the SQLite folder."""
    if url is None:
        from radclip.settings import get_settings

        url = get_settings().resolved_database_url
    url = normalise_url(url)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url[len("sqlite:///") :]).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("postgresql"):
        kwargs.setdefault("pool_pre_ping", True)
    # Bound parameters are study ids, patient pseudonyms and file paths: keep them out of
    # exception text, which ends up in logs (issue 18).
    kwargs.setdefault("hide_parameters", True)
    return create_engine(url, **kwargs)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic, configured in code."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(bind=engine, expire_on_commit=False)
