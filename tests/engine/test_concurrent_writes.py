"""Concurrent writers and the races found in review: each test fails on the code before the fix."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from engine_fakes import HashingTextEmbedder, ProjectionImageEmbedder
from test_study_index import make_pngs

from radclip.engine.index import IndexConfig
from radclip.engine.registry import PromptRegistry
from radclip.engine.study_index import StudyIndex, StudyRecord


class SlowText(HashingTextEmbedder):
    """Encoding takes a moment, as a real text model does: writers overlap inside their transactions."""

    def encode_text(self, texts: list[str]) -> np.ndarray:
        time.sleep(0.05)
        return super().encode_text(texts)


def _parallel(n: int, fn) -> Counter:  # type: ignore[no-untyped-def,type-arg]
    out: Counter = Counter()  # type: ignore[type-arg]
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[str(fn(i))] += 1
        except Exception as exc:
            out[type(exc).__name__] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_parallel_registrations_of_one_new_name_never_fail(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    registries = [PromptRegistry(url, SlowText()) for _ in range(6)]  # six processes' worth of engines
    prompts = ["a new finding on the film", "another phrasing of it"]
    for round_ in range(5):
        got = _parallel(
            6, lambda i, r=round_: registries[i].register(f"cond_{r}", prompts, [], "other").status
        )  # type: ignore[misc]
        assert got == Counter({"registered": 1, "unchanged": 5}), got
    assert [c.version for c in registries[0].list()] == [1] * 5


def _index(tmp_path: Path, url: str, **cfg: object) -> tuple[StudyIndex, list[StudyRecord]]:
    records = make_pngs(tmp_path / "imgs", 6)
    idx = StudyIndex(
        ProjectionImageEmbedder(), url, tmp_path / "index", config=IndexConfig(**cfg), batch_size=8
    )  # type: ignore[arg-type]
    idx.open(records[:4])
    return idx, records


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_parallel_ingest_of_one_image_adds_it_once(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    idx, records = _index(tmp_path, url)
    got = _parallel(6, lambda i: idx.add_studies([records[4]]))
    assert got == Counter({"1": 1, "0": 5}), got
    assert idx.index.live == 5 and idx._count(idx.key) == 5


def test_a_lateral_after_the_pa_is_a_second_image_of_the_study(sqlite_url: str, tmp_path: Path) -> None:
    idx, records = _index(tmp_path, sqlite_url)
    pa = StudyRecord("1.2.3.study", records[4].image_path, view="PA", instance_id="1.2.3.4.pa")
    lateral = StudyRecord("1.2.3.study", records[5].image_path, view="LL", instance_id="1.2.3.4.lat")
    assert idx.add_studies([pa]) == 1
    assert idx.add_studies([lateral]) == 1  # keyed by study, this was "already indexed" and never indexed
    assert idx.add_studies([lateral]) == 0
    q = ProjectionImageEmbedder().encode_images(idx.load_fn(records[5].image_path)[None])
    top = idx.search(q, 1)[0][0]
    assert (top["study_id"], top["view"]) == ("1.2.3.study", "LL") and top["similarity"] == pytest.approx(
        1.0, abs=1e-5
    )
    assert idx.delete_study("1.2.3.study") and idx.index.live == 4  # both images leave with their study


def test_an_add_racing_a_compaction_keeps_its_vector(sqlite_url: str, tmp_path: Path) -> None:
    """The index object was captured before the lock: a compaction swapping it in between lost the add."""
    idx, records = _index(tmp_path, sqlite_url, hnsw_threshold=1, rebuild_tombstone_fraction=0.01)
    assert idx.index.kind == "hnsw"
    real, fired = idx.embedder.encode_images, []

    def encode_then_compact(batch: np.ndarray) -> np.ndarray:
        if not fired:  # while the add embeds, a delete compacts the index (replaces the object)
            fired.append(1)
            before = idx.index
            assert idx.delete_study(records[0].study_id) and idx.index is not before
        return real(batch)

    idx.embedder.encode_images = encode_then_compact  # type: ignore[method-assign]
    assert idx.add_studies([records[4]]) == 1
    q = ProjectionImageEmbedder().encode_images(idx.load_fn(records[4].image_path)[None])
    assert idx.search(q, 1)[0][0]["study_id"] == records[4].study_id
    assert idx.index.live == 4


def test_saving_after_an_ingest_does_not_hold_the_search_lock(sqlite_url: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import radclip.engine.index as index_mod

    idx, records = _index(tmp_path, sqlite_url)
    free_while_hashing: list[bool] = []
    real_hash = index_mod.sha256_file

    def probing_hash(path: Path, chunk: int = 1 << 20) -> str:
        def probe() -> None:  # another thread, as a search would be
            got = idx._lock.acquire(blocking=False)
            free_while_hashing.append(got)
            if got:
                idx._lock.release()

        t = threading.Thread(target=probe)
        t.start()
        t.join()
        return real_hash(path, chunk)

    monkeypatch.setattr(index_mod, "sha256_file", probing_hash)
    assert idx.add_studies([records[4]]) == 1
    assert free_while_hashing == [True]
    reopened = StudyIndex(ProjectionImageEmbedder(), sqlite_url, tmp_path / "index").open(
        records[:4], snapshot=idx.key.snapshot
    )
    assert (reopened.loaded, reopened.live) == (True, 5)  # the committed file and manifest agree


def test_identical_uploads_stored_at_once_use_their_own_temporary_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from radclip.service.routers import studies

    tmps: list[str] = []
    real_replace = Path.replace

    def recording_replace(self: Path, target: Path) -> Path:  # type: ignore[override]
        tmps.append(self.name)
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", recording_replace)
    first = studies._store(tmp_path, b"same bytes", "png")
    first.unlink()  # as if the second upload checked before the first one's rename
    second = studies._store(tmp_path, b"same bytes", "png")
    assert first == second and second.read_bytes() == b"same bytes"
    assert len(tmps) == 2 and tmps[0] != tmps[1]


def test_set_reference_during_a_rebuild_is_not_overwritten_by_it() -> None:
    """A rebuild that read the old reference stored its mapping after set_reference (screening then kept it)."""
    from radclip.engine.calibration import ReferenceDistribution
    from radclip.engine.screening import Screener, StaticConditions

    rng = np.random.default_rng(0)
    source = StaticConditions(["a", "b"], ["other", "other"], rng.standard_normal((2, 16)).astype(np.float32))
    screener = Screener(source, refresh_s=3600)
    old = ReferenceDistribution.from_embeddings(rng.standard_normal((64, 16)).astype(np.float32))
    new = ReferenceDistribution.from_embeddings(rng.standard_normal((64, 16)).astype(np.float32) + 0.5)
    racer: list[threading.Thread] = []

    class OldReference:  # the rebuild is computing the old mapping when the new reference arrives
        def mapping(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            if not racer:
                racer.append(threading.Thread(target=screener.set_reference, args=(new,)))
                racer[0].start()
                racer[0].join(timeout=0.5)  # before the fix it completes here, inside the rebuild
            return old.mapping(matrix)

    screener.set_reference(OldReference())  # type: ignore[arg-type]
    screener.matrix()
    racer[0].join()
    _, scale, bias, _ = screener._current()
    new_scale, new_bias = new.mapping(source.condition_matrix().matrix)
    np.testing.assert_allclose(scale, new_scale, rtol=1e-6)
    np.testing.assert_allclose(bias, new_bias, rtol=1e-6)
