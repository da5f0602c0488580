"""Study index end to end: real PNGs through radclip.io, warm start, rebuilds, add/delete, cancel, retrieval."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from engine_fakes import ProjectionImageEmbedder
from PIL import Image

from radclip.engine.index import IndexConfig, IndexKey
from radclip.engine.retrieval import Retriever
from radclip.engine.study_index import BuildCancelled, StudyIndex, StudyRecord, snapshot_of


def make_pngs(folder: Path, n: int, seed: int = 0) -> list[StudyRecord]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = (rng.random((64, 64)) * 255).astype(np.uint8)
        path = folder / f"s{seed}_{i:03d}.png"
        Image.fromarray(img, mode="L").save(path)
        out.append(StudyRecord(f"s{seed}_{i:03d}", str(path), patient_id=f"p{i % 7}", view="PA" if i % 2 else "AP",
                               findings=f"report {i}", source="synthetic"))  # fmt: skip
    return out


@pytest.fixture()
def records(tmp_path: Path) -> list[StudyRecord]:
    return make_pngs(tmp_path / "imgs", 40)


def open_index(sqlite_url: str, root: Path, embedder: ProjectionImageEmbedder, **kw) -> StudyIndex:
    return StudyIndex(embedder, sqlite_url, root, batch_size=8, **kw)


def test_warm_start_loads_without_embedding(records, sqlite_url, tmp_path) -> None:
    emb = ProjectionImageEmbedder()
    seen: list[tuple[int, int]] = []
    rep = open_index(sqlite_url, tmp_path / "index", emb).open(records, progress=lambda d, t: seen.append((d, t)))
    assert (rep.loaded, rep.embedded, rep.live, rep.kind) == (False, 40, 40, "flat")
    assert emb.calls == 5 and emb.images_encoded == 40  # 40 images in batches of 8
    assert seen[0] == (0, 40) and seen[-1] == (40, 40) and len(seen) == 6
    emb2 = ProjectionImageEmbedder()
    idx2 = open_index(sqlite_url, tmp_path / "index", emb2)
    rep2 = idx2.open(records)
    assert (rep2.loaded, rep2.reason, emb2.calls) == (True, "loaded", 0)
    # The warm index answers exactly like a fresh embedding of the same image.
    from radclip.engine.study_index import default_load_fn

    q = emb.encode_images(default_load_fn()(records[5].image_path)[None])
    hits = idx2.search(q, 3)[0]
    assert hits[0]["study_id"] == records[5].study_id and hits[0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert hits[0]["view"] == "PA" and hits[0]["patient_id"] == "p5"


def test_changed_key_or_corrupt_file_rebuilds(records, sqlite_url, tmp_path) -> None:
    emb = ProjectionImageEmbedder()
    root = tmp_path / "index"
    first = open_index(sqlite_url, root, emb)
    first.open(records)
    # New image model version: new key, rebuild.
    emb_v2 = ProjectionImageEmbedder(version="fake-image@2")
    rep = open_index(sqlite_url, root, emb_v2).open(records)
    assert (rep.loaded, rep.reason, emb_v2.images_encoded) == (False, "missing", 40)
    # Changed snapshot (a study more): rebuild.
    more = records + make_pngs(tmp_path / "more", 1, seed=9)
    assert snapshot_of(more) != snapshot_of(records)
    emb3 = ProjectionImageEmbedder()
    assert open_index(sqlite_url, root, emb3).open(more).loaded is False and emb3.images_encoded == 41
    # Corrupt the persisted file for the original key: detected and rebuilt, never served.
    idx_path, _ = first.store.paths(first.key)
    idx_path.write_bytes(idx_path.read_bytes()[:-100])
    emb4 = ProjectionImageEmbedder()
    rep4 = open_index(sqlite_url, root, emb4).open(records)
    assert (rep4.loaded, rep4.reason, emb4.images_encoded) == (False, "checksum mismatch", 40)
    emb5 = ProjectionImageEmbedder()
    assert open_index(sqlite_url, root, emb5).open(records).loaded and emb5.calls == 0


def test_add_delete_and_hnsw_switch(records, sqlite_url, tmp_path) -> None:
    emb = ProjectionImageEmbedder()
    idx = open_index(sqlite_url, tmp_path / "index", emb, config=IndexConfig(hnsw_threshold=45))
    idx.open(records[:30])
    assert idx.index.kind == "flat"
    assert idx.add_studies(records[25:]) == 10  # 5 already indexed are skipped
    assert idx.index.live == 40 and idx.index.kind == "flat"
    extra = make_pngs(tmp_path / "extra", 6, seed=3)
    assert idx.add_studies(extra) == 6 and idx.index.kind == "hnsw" and idx.index.live == 46
    victim = extra[2]
    q = emb.encode_images(idx.load_fn(victim.image_path)[None])
    assert idx.search(q, 1)[0][0]["study_id"] == victim.study_id
    assert idx.delete_study(victim.study_id) and not idx.delete_study(victim.study_id)
    assert victim.study_id not in [h["study_id"] for h in idx.search(q, 10)[0]]
    assert idx.index.live == 45 and idx.index.tombstones  # HNSW: a tombstone until compaction
    # The saved state (tombstone included) is what a warm start loads.
    emb2 = ProjectionImageEmbedder()
    again = open_index(sqlite_url, tmp_path / "index", emb2, config=IndexConfig(hnsw_threshold=45))
    rep = again.open(records[:30], snapshot=idx.key.snapshot)
    assert rep.loaded and emb2.calls == 0 and again.index.live == 45


def test_cancel_writes_nothing(records, sqlite_url, tmp_path) -> None:
    stop = threading.Event()
    idx = open_index(sqlite_url, tmp_path / "index", ProjectionImageEmbedder())

    def progress(done: int, total: int) -> None:
        if done >= 16:
            stop.set()

    with pytest.raises(BuildCancelled, match="after 16/40"):
        idx.open(records, progress=progress, cancel=stop)
    assert idx.index is None and not list((tmp_path / "index").glob("*.faiss"))
    assert idx._count(IndexKey(snapshot_of(records), "fake-image@1")) == 0


def test_unreadable_image_is_skipped(records, sqlite_url, tmp_path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    rep = open_index(sqlite_url, tmp_path / "index", ProjectionImageEmbedder()).open(
        [*records[:5], StudyRecord("broken", str(bad))]
    )
    assert rep.failed == ["broken"] and rep.live == 5


def test_retrieval_text_and_image(records, sqlite_url, tmp_path) -> None:
    emb = ProjectionImageEmbedder()
    idx = open_index(sqlite_url, tmp_path / "index", emb)
    idx.open(records)
    target = idx.load_fn(records[11].image_path)

    class AlignedText:  # a text model whose embedding of the query lands next to study 11
        version, dim = "fake-text@1", emb.dim

        def encode_text(self, texts):
            v = emb.encode_images(target[None])[0] + 0.05 * np.random.default_rng(0).standard_normal(emb.dim)
            return (v / np.linalg.norm(v))[None].astype(np.float32)

    r = Retriever(idx, AlignedText())
    hits = r.search_text("right middle lobe collapse", k=5)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5] and hits[0].study_id == records[11].study_id
    assert hits[0].similarity > hits[1].similarity and hits[0].metadata["findings"] == "report 11"
    by_image = r.search_image(np.stack([target, idx.load_fn(records[3].image_path)]), k=2)
    assert [h[0].study_id for h in by_image] == [records[11].study_id, records[3].study_id]
    with pytest.raises(ValueError, match="empty"):
        r.search_text("   ")


@pytest.mark.shared_data
def test_index_shared_pool_sample(data_root, sqlite_url, tmp_path) -> None:
    """A few real unlabelled pool images through the real loader (indexed, never labelled)."""
    from radclip.engine.corpus import records_from_folder

    recs = records_from_folder(data_root / "cxr" / "pool")[:12]
    rep = open_index(sqlite_url, tmp_path / "index", ProjectionImageEmbedder()).open(recs)
    assert rep.live == 12 and rep.failed == []


def test_metadata_cache_keeps_every_hit_across_its_size_bound(records, sqlite_url, tmp_path) -> None:
    """Search metadata comes from memory after the first read; rolling the bounded cache over loses no hit."""
    idx = open_index(sqlite_url, tmp_path / "index", ProjectionImageEmbedder())
    idx.open(records[:6], snapshot="s")
    ids = [int(i) for i in idx.index.ids()][:3]
    first = idx.metadata(ids)
    assert sorted(first) == sorted(ids) and all(first[i]["study_id"] for i in ids)
    idx._meta_cache.update({10_000_000 + j: {} for j in range(200_001)})  # over the bound, ids[0] still cached
    idx._meta_cache.pop(ids[1])  # ... and ids[1] must come from the database, which triggers the roll-over
    again = idx.metadata(ids)
    assert again == first
