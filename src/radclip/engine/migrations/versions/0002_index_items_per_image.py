"""Index items are images: unique per (index key, SOP Instance UID), grouped by study id.

Keyed by study, a lateral sent after the PA of the same study was answered "already indexed"
and never indexed. Existing rows get ``instance_id = study_id`` (one image per study so far).

Revision ID: 0002
Revises: 0001_initial
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

# 0001 left the (index_key, study_id) unique constraint unnamed: PostgreSQL named it itself; on SQLite
# batch mode reflects it nameless, so it gets a name from this convention to be dropped.
_PG_OLD_UNIQUE = "index_items_index_key_study_id_key"
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s_%(column_1_name)s"}


def _old_unique_name() -> str:
    return (
        _PG_OLD_UNIQUE if op.get_bind().dialect.name == "postgresql" else "uq_index_items_index_key_study_id"
    )


def _sqlite_seq() -> int | None:
    """SQLite AUTOINCREMENT high-water mark: ids are FAISS ids and must survive the table rebuild."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return None
    return bind.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'index_items'")).scalar()


def _restore_seq(seq: int | None) -> None:
    if seq is not None:
        op.execute(
            sa.text("UPDATE sqlite_sequence SET seq = MAX(seq, :s) WHERE name = 'index_items'").bindparams(
                s=seq
            )
        )


def upgrade() -> None:
    seq = _sqlite_seq()
    op.add_column("index_items", sa.Column("instance_id", sa.String(200), nullable=True))
    op.execute("UPDATE index_items SET instance_id = study_id")
    with op.batch_alter_table(
        "index_items", naming_convention=_NAMING, table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.alter_column("instance_id", existing_type=sa.String(200), nullable=False)
        batch.drop_constraint(_old_unique_name(), type_="unique")
        batch.create_unique_constraint("uq_index_items_instance", ["index_key", "instance_id"])
        batch.create_index("ix_index_items_study", ["index_key", "study_id"])
    _restore_seq(seq)


def downgrade() -> None:
    """Back to one row per study: all but the first image of a multi-image study are deleted."""
    seq = _sqlite_seq()
    op.execute(
        "DELETE FROM index_items WHERE id NOT IN (SELECT MIN(id) FROM index_items GROUP BY index_key, study_id)"
    )
    with op.batch_alter_table(
        "index_items", naming_convention=_NAMING, table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.drop_index("ix_index_items_study")
        batch.drop_constraint("uq_index_items_instance", type_="unique")
        batch.create_unique_constraint(_old_unique_name(), ["index_key", "study_id"])
        batch.drop_column("instance_id")
    _restore_seq(seq)
