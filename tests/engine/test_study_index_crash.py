"""A crash between an ingest's row insert and its index save must not lose the images ingested before it."""

from __future__ import annotations

from pathlib import Path

from engine_fakes import ProjectionImageEmbedder
from sqlalchemy import func, select
from test_study_index import make_pngs

from radclip.engine import db
from radclip.engine.study_index import StudyIndex, StudyRecord


def test_rebuild_after_a_crash_mid_ingest_keeps_every_ingested_image(sqlite_url: str, tmp_path: Path) -> None:
    corpus = make_pngs(tmp_path / "corpus", 12)
    ingested = [StudyRecord("api-study", r.image_path, view=r.view, source="api", instance_id=f"api-study/{i}")
                for i, r in enumerate(make_pngs(tmp_path / "ingested", 3, seed=5))]  # fmt: skip
    first = StudyIndex(ProjectionImageEmbedder(), sqlite_url, tmp_path / "index", batch_size=8)
    first.open(corpus)
    assert first.add_studies(ingested[:2]) == 2  # acknowledged: row inserted and index saved
    # The process dies after inserting the third image's row, before its index save.
    first._insert_new(first.key, ingested[2:])
    first.engine.dispose()

    again = StudyIndex(ProjectionImageEmbedder(), sqlite_url, tmp_path / "index", batch_size=8)
    report = again.open(corpus)
    assert (report.loaded, report.reason) == (False, "metadata count differs from the index")
    assert report.live == 12 + 3
    with again.engine.connect() as conn:
        per_image = dict(
            conn.execute(
                select(db.IndexItem.instance_id, func.count()).group_by(db.IndexItem.instance_id)
            ).all()
        )
    assert all(per_image[r.image_key] == 1 for r in corpus + ingested) and len(per_image) == 15
    # Each ingested image is searchable again: its own embedding finds it first.
    from radclip.engine.study_index import default_load_fn

    for r in ingested:
        q = again.embedder.encode_images(default_load_fn()(r.image_path)[None])
        assert again.search(q, 1)[0][0]["study_id"] == "api-study"
    # And the rebuilt index is warm on the next start (its checksum verifies, counts agree).
    assert StudyIndex(ProjectionImageEmbedder(), sqlite_url, tmp_path / "index").open(corpus).loaded
