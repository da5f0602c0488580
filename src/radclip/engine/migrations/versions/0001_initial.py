"""Initial engine schema: conditions, versions, prompts, embeddings, calibrations, index items.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "conditions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("synonyms", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("registered_by", sa.String(128), nullable=False),
        sa.Column("registered_at", TS, nullable=False),
    )
    op.create_index("ix_conditions_name", "conditions", ["name"], unique=True)
    op.create_table(
        "condition_versions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("condition_id", BigId, sa.ForeignKey("conditions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("prompts_sha256", sa.String(64), nullable=False),
        sa.Column("synonyms", sa.Text(), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("registered_by", sa.String(128), nullable=False),
        sa.Column("registered_at", TS, nullable=False),
        sa.UniqueConstraint("condition_id", "version"),
    )
    op.create_index("ix_condition_versions_condition_id", "condition_versions", ["condition_id"])
    op.create_table(
        "prompts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("condition_version_id", BigId, sa.ForeignKey("condition_versions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(300), nullable=False),
    )
    op.create_index("ix_prompts_condition_version_id", "prompts", ["condition_version_id"])
    op.create_table(
        "prompt_embeddings",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("condition_version_id", BigId, sa.ForeignKey("condition_versions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("text_version", sa.String(128), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("n_prompts", sa.Integer(), nullable=False),
        sa.Column("prompt_vectors", sa.LargeBinary(), nullable=False),
        sa.Column("ensemble", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("condition_version_id", "text_version"),
    )
    op.create_index("ix_prompt_embeddings_condition_version_id", "prompt_embeddings", ["condition_version_id"])
    op.create_index("ix_prompt_embeddings_text_version", "prompt_embeddings", ["text_version"])
    op.create_table(
        "calibrations",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("condition_version_id", BigId, sa.ForeignKey("condition_versions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("text_version", sa.String(128), nullable=False),
        sa.Column("image_version", sa.String(128), nullable=False),
        sa.Column("scale", sa.Float(), nullable=False),
        sa.Column("bias", sa.Float(), nullable=False),
        sa.Column("n_pos", sa.Integer(), nullable=False),
        sa.Column("n_neg", sa.Integer(), nullable=False),
        sa.Column("fitted_at", TS, nullable=False),
        sa.UniqueConstraint("condition_version_id", "text_version", "image_version"),
    )
    op.create_index("ix_calibrations_condition_version_id", "calibrations", ["condition_version_id"])
    op.create_table(
        "index_items",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("index_key", sa.String(200), nullable=False),
        sa.Column("study_id", sa.String(200), nullable=False),
        sa.Column("patient_id", sa.String(200), nullable=True),
        sa.Column("view", sa.String(16), nullable=True),
        sa.Column("study_date", sa.String(32), nullable=True),
        sa.Column("findings", sa.Text(), nullable=True),
        sa.Column("source", sa.String(64), nullable=True),
        sa.Column("image_path", sa.Text(), nullable=False),
        sa.Column("added_at", TS, nullable=False),
        sa.UniqueConstraint("index_key", "study_id"),
        sqlite_autoincrement=True,  # ids are FAISS ids: never reuse one after a delete
    )
    op.create_index("ix_index_items_index_key", "index_items", ["index_key"])


def downgrade() -> None:
    for table in ("index_items", "calibrations", "prompt_embeddings", "prompts", "condition_versions", "conditions"):
        op.drop_table(table)
