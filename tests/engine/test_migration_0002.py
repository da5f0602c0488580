"""Migration 0002: index items become images (unique SOP instance per index key), ids and rows kept."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from radclip.engine import db

_INSERT = text(
    "INSERT INTO index_items (index_key, study_id, image_path, added_at) VALUES ('k', :s, '/x.png', '2026-01-01')"
)
_INSERT_IMAGE = text(
    "INSERT INTO index_items (index_key, study_id, instance_id, image_path, added_at) VALUES ('k', :s, :i, '/x.png', '2026-01-01')"
)


def _downgrade(engine: object, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS_DIR))
    with engine.begin() as conn:  # type: ignore[attr-defined]
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrade_keeps_rows_and_ids_then_allows_several_images_per_study(
    backend: str, request: pytest.FixtureRequest
) -> None:
    engine = db.make_engine(request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url"))
    db.migrate(engine, "0001_initial")
    with engine.begin() as c:
        for study in ("s1", "s2", "s3"):
            c.execute(_INSERT, {"s": study})
        c.execute(
            text("DELETE FROM index_items WHERE study_id = 's3'")
        )  # id 3 is a FAISS id that must not come back
    db.migrate(engine)
    with engine.begin() as c:
        rows = c.execute(text("SELECT id, study_id, instance_id FROM index_items ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(1, "s1", "s1"), (2, "s2", "s2")]
        c.execute(_INSERT_IMAGE, {"s": "s1", "i": "s1.lateral"})  # a second image of study s1
        new_id = c.execute(text("SELECT MAX(id) FROM index_items")).scalar()
    assert new_id == 4
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(_INSERT_IMAGE, {"s": "s9", "i": "s1.lateral"})  # one SOP instance, one row
    _downgrade(engine, "0001_initial")  # back to one row per study
    with engine.begin() as c:
        assert [
            tuple(r) for r in c.execute(text("SELECT id, study_id FROM index_items ORDER BY id")).all()
        ] == [(1, "s1"), (2, "s2")]
    engine.dispose()
