"""Archive-scale IVF-PQ index: recall against exact search, exact float16 re-ranking, deletes, persistence."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from radclip.engine import ivfpq
from radclip.engine.index import IndexConfig, IndexKey, IndexStore, VectorIndex

DIM = 128
# Small lists and codes for a 10k-vector test; IVF-PQ is otherwise the default only from 2M vectors.
CFG = IndexConfig(ivf_pq_m=16, ivf_pq_nbits=6, ivf_nprobe=16, ivf_rerank=200, ivf_train_size=10_000)


def clustered(n: int, seed: int, centres: int = 40) -> np.ndarray:
    """Unit vectors around a few dozen centres (structured like image embeddings, unlike uniform noise)."""
    c = np.random.default_rng(0).standard_normal((centres, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed)
    x = c[rng.integers(0, centres, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    base = clustered(10_000, 1)
    return base, clustered(200, 2), np.arange(len(base), dtype=np.int64) * 7 + 1_000  # ids are not row numbers


@pytest.fixture(scope="module")
def built(data) -> VectorIndex:
    base, _, ids = data
    return VectorIndex.build(base, ids, CFG, kind="ivfpq")


def exact(base: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = q @ base.T
    top = np.argsort(-sims, axis=1)[:, :k]
    return np.take_along_axis(sims, top, 1), ids[top]


def recall(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b, strict=True)]))


def test_recall_against_exact_and_ids_are_db_ids(data, built) -> None:
    base, q, ids = data
    assert built.kind == "ivfpq" and built.ntotal == built.live == len(base)
    _, truth = exact(base, ids, q, 10)
    scores, found = built.search(q, 10)
    assert recall(found, truth) >= 0.95  # measured 0.99; re-ranking only 50 candidates gives 0.64
    assert set(found.ravel().tolist()) <= set(ids.tolist())
    # a database vector as the query finds itself first, under its database id
    _, self_hit = built.search(base[[5, 777, 9_999]], 1)
    np.testing.assert_array_equal(self_hit[:, 0], ids[[5, 777, 9_999]])
    assert np.all(np.diff(scores, axis=1) <= 0)
    # re-ranking is what buys the recall: PQ codes alone rank worse
    _, pq_rows = built._index.search(q, 10)
    assert recall(ids[pq_rows], truth) < recall(found, truth)


def test_float16_rerank_scores_are_exact_within_1e3(data, built) -> None:
    base, q, ids = data
    scores, found = built.search(q, 10)
    row = {int(i): r for r, i in enumerate(ids)}
    want = np.einsum("qd,qkd->qk", q, base[[[row[int(i)] for i in r] for r in found]])
    np.testing.assert_allclose(scores, want, atol=1e-3)
    assert np.abs(scores - want).max() > 0  # float16 storage really is in the loop
    exact_s, _ = exact(base, ids, q, 10)
    hit = found == exact(base, ids, q, 10)[1]
    np.testing.assert_allclose(scores[hit], exact_s[hit], atol=1e-3)


def test_delete_never_returns_deleted_and_compacts(data) -> None:
    base, q, ids = data
    idx = VectorIndex.build(base, ids, CFG, kind="ivfpq")
    _, before = idx.search(q[:20], 5)
    gone = np.unique(before[:, :2])
    assert idx.remove(gone) == len(gone) and idx.remove(gone) == 0 and idx.remove(np.array([3])) == 0
    assert idx.ntotal == idx.live == len(base) - len(gone) and not idx.tombstones
    _, after = idx.search(q[:20], 5)
    assert not set(gone.tolist()) & set(after.ravel().tolist())
    assert len(idx.ids()) == idx.live and not set(gone.tolist()) & set(idx.ids().tolist())
    small = idx.compacted()
    assert small.kind == "flat" and small.ntotal == idx.live  # re-chosen by size (default thresholds)
    assert recall(after, small.search(q[:20], 5)[1]) >= 0.9


def test_kind_chosen_by_size_and_switch_on_growth(data) -> None:
    base, _, ids = data
    cfg = IndexConfig(hnsw_threshold=100, ivfpq_threshold=2_000, ivf_pq_m=16, ivf_pq_nbits=6, ivf_train_size=2_000)
    assert [VectorIndex.build(base[:n], ids[:n], cfg).kind for n in (99, 100, 1_999, 2_000)] == ["flat", "hnsw", "hnsw", "ivfpq"]
    assert VectorIndex.build(base[:3_000], ids[:3_000]).kind == "flat"  # defaults unchanged
    grow = VectorIndex.build(base[:1_500], ids[:1_500], cfg)
    assert grow.kind == "hnsw" and not grow.outgrown
    grow.add(base[1_500:2_500], ids[1_500:2_500])
    assert grow.outgrown and grow.compacted().kind == "ivfpq"
    with pytest.raises(ValueError, match="divisible"):
        VectorIndex.build(base[:2_000], ids[:2_000], IndexConfig(ivf_pq_m=12, ivf_pq_nbits=6), kind="ivfpq")


def test_save_load_roundtrip_and_vector_checksum(tmp_path, data, built) -> None:
    base, q, ids = data
    store = IndexStore(tmp_path)
    key = IndexKey("c" * 64, "fake-image@1")
    idx = VectorIndex.build(base, ids, CFG, kind="ivfpq")
    idx.remove(ids[:10])
    manifest = store.save(key, idx)
    assert set(manifest["sidecars"]) == {"vectors", "rowids"} and manifest["sidecars"]["vectors"]["bytes"] == len(base) * DIM * 2
    loaded = store.load(key)
    assert loaded.reason == "loaded" and loaded.index.kind == "ivfpq" and loaded.index.live == len(base) - 10
    for a, b in zip(loaded.index.search(q, 10), idx.search(q, 10), strict=True):
        np.testing.assert_array_equal(a, b)
    # adding to a loaded index never writes the saved vector file (copy on write)
    vec_file = store.sidecar_path(key, "vectors")
    size_before = vec_file.stat().st_size
    loaded.index.add(base[:3], np.array([1, 2, 3]))
    assert vec_file.stat().st_size == size_before and store.load(key).reason == "loaded"
    assert set(loaded.index.search(base[:1], 1)[1][0]) == {1}
    # a flipped byte in the vector file is detected and the index is not served
    raw = bytearray(vec_file.read_bytes())
    raw[12_345] ^= 0xFF
    vec_file.write_bytes(bytes(raw))
    bad = store.load(key)
    assert bad.index is None and bad.reason == "checksum mismatch"
    raw[12_345] ^= 0xFF
    vec_file.write_bytes(bytes(raw))
    assert store.load(key).reason == "loaded"
    store.sidecar_path(key, "rowids").unlink()
    assert store.load(key).reason == "missing rowids file"
    store.remove(key)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="untrained"):
        store.save(key, VectorIndex(DIM, "ivfpq", CFG))


def test_rerank_and_list_defaults_scale_with_size(data, built) -> None:
    """ivf_rerank=0 re-ranks by size (800 up to 3M, 2,400 at 10M); auto nlist stops at the measured 4,096."""
    assert [ivfpq.auto_rerank(n) for n in (10_000, 2_000_000, 4_000_000, 10_000_000)] == [800, 800, 960, 2_400]
    assert [ivfpq.auto_nlist(n) for n in (10_000, 1_000_000, 10_000_000)] == [256, 4_096, 4_096]
    _, q, _ = data
    auto = VectorIndex(built.dim, "ivfpq", replace(CFG, ivf_rerank=0), _index=built._index, _vectors=built._vectors)
    fixed = VectorIndex(built.dim, "ivfpq", replace(CFG, ivf_rerank=800), _index=built._index, _vectors=built._vectors)
    assert auto.rerank_depth == 800 and built.rerank_depth == 200
    np.testing.assert_array_equal(auto.search(q, 10)[1], fixed.search(q, 10)[1])
    # the depth is what search uses: 200 candidates rank differently from 800 on these queries
    assert not np.array_equal(built.search(q, 10)[1], auto.search(q, 10)[1])


def test_page_ranges_cover_exactly_the_rows_pages() -> None:
    """Row byte ranges -> page-aligned ranges, adjacent pages merged (4 rows of 1 KB per 4 KB page)."""
    # rows 0-3: page 0, row 4: page 1, row 9: page 2 (adjacent: one range); rows 40-41: page 10; row 1,000: page 250
    rows = np.array([0, 1, 3, 4, 9, 40, 41, 1_000])
    assert ivfpq.page_ranges(rows, 1024, 4096) == [(0, 12288), (40960, 4096), (1_024_000, 4096)]
    # a row straddling two pages: row 2 of 1,536 B is bytes 3,072..4,607, pages 0 and 1
    assert ivfpq.page_ranges(np.array([2]), 1536, 4096) == [(0, 8192)]
    assert ivfpq.page_ranges(np.array([3]), 1536, 4096) == [(4096, 4096)]  # bytes 4,608..6,143: page 1 only


def test_prefetch_advises_exactly_the_candidate_pages_and_changes_no_result(data, built) -> None:
    """ivf_prefetch: madvise(WILLNEED) on this mapping for the re-ranked rows' pages; same results with it off."""
    import mmap

    _, q, _ = data
    off = VectorIndex(built.dim, "ivfpq", replace(CFG, ivf_prefetch=False), _index=built._index, _vectors=built._vectors)
    calls: list[tuple[int, int, int]] = []

    class Recorder:  # stands in for the memmap's mmap object: records, then forwards
        def __init__(self, real) -> None:
            self.real = real

        def madvise(self, advice: int, start: int, length: int) -> None:
            calls.append((advice, start, length))
            self.real.madvise(advice, start, length)

    mm = built._vectors._map()
    mm._mmap = Recorder(mm._mmap)
    s_on, i_on = built.search(q[:3], 10)
    hinted = len(calls)
    s_off, i_off = off.search(q[:3], 10)
    assert hinted > 0 and len(calls) == hinted  # prefetch off: no hints
    np.testing.assert_array_equal(i_on, i_off)
    np.testing.assert_array_equal(s_on, s_off)
    _, cand = built._index.search(q[:3], built.rerank_depth)
    expected = [(mmap.MADV_WILLNEED, start, length) for c in cand
                for start, length in ivfpq.page_ranges(np.unique(c[c >= 0]), DIM * 2, mmap.PAGESIZE)]  # fmt: skip
    assert calls == expected
