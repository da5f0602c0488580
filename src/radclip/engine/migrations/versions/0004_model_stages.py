"""Model operations: model versions with stages, their stage history, served predictions, radiologist feedback.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("canary_percent", sa.Float(), nullable=True),
        sa.Column("registered_by", sa.String(128), nullable=False),
        sa.Column("registered_at", TS, nullable=False),
        sa.UniqueConstraint("name", "version"),
        sa.UniqueConstraint("name", "sha256"),
    )
    op.create_index("ix_model_versions_name", "model_versions", ["name"])
    op.create_table(
        "model_stage_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "model_version_id", BigId, sa.ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("from_stage", sa.String(16), nullable=True),
        sa.Column("to_stage", sa.String(16), nullable=False),
        sa.Column("canary_percent", sa.Float(), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_model_stage_events_model_version_id", "model_stage_events", ["model_version_id"])
    op.create_table(
        "served_predictions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("study_key", sa.String(128), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("scores", sa.Text(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.UniqueConstraint("study_key", "model_name", "model_version", "role"),
    )
    op.create_index("ix_served_predictions_study_key", "served_predictions", ["study_key"])
    op.create_table(
        "feedback",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("study_key", sa.String(128), nullable=False),
        sa.Column("reader", sa.String(128), nullable=False),
        sa.Column("patient_key", sa.String(128), nullable=True),
        sa.Column("findings", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("study_key", "reader"),
    )
    op.create_index("ix_feedback_updated_at", "feedback", ["updated_at"])


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("served_predictions")
    op.drop_table("model_stage_events")
    op.drop_table("model_versions")
