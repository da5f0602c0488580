"""FAISS index: exact vs HNSW recall, deletes, persistence with checksums and atomic writes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from radclip.engine import index as index_mod
from radclip.engine.index import IndexConfig, IndexKey, IndexStore, VectorIndex


def lowrank(n: int, seed: int, dim: int = 128, latent: int = 16) -> np.ndarray:
    basis = np.random.default_rng(0).standard_normal((latent, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, latent)).astype(np.float32) @ basis + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return lowrank(5000, 1), lowrank(200, 2)


def recall(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b, strict=True)]))


def test_kind_by_threshold_and_exact_matches_numpy(data) -> None:
    base, q = data
    ids = np.arange(100, 100 + len(base))
    flat = VectorIndex.build(base, ids, IndexConfig(hnsw_threshold=10_000))
    assert flat.kind == "flat" and VectorIndex.build(base[:50], ids[:50], IndexConfig(hnsw_threshold=50)).kind == "hnsw"
    scores, found = flat.search(q, 10)
    truth = np.argsort(-(q @ base.T), axis=1)[:, :10] + 100
    assert recall(found, truth) == 1.0
    np.testing.assert_allclose(scores[:, 0], (q @ base.T).max(axis=1), atol=1e-5)


def test_hnsw_recall_against_exact(data) -> None:
    base, q = data
    ids = np.arange(len(base))
    _, exact = VectorIndex.build(base, ids, kind="flat").search(q, 10)
    hnsw = VectorIndex.build(base, ids, IndexConfig(ef_search=64), kind="hnsw")
    _, approx = hnsw.search(q, 10)
    assert recall(approx, exact) >= 0.95


def test_delete_flat_and_hnsw_tombstones(data) -> None:
    base, q = data
    ids = np.arange(len(base))
    for kind in ("flat", "hnsw"):
        idx = VectorIndex.build(base, ids, IndexConfig(rebuild_tombstone_fraction=0.01), kind=kind)
        _, before = idx.search(q[:5], 5)
        gone = before[:, 0]
        assert idx.remove(gone) == len(set(gone.tolist())) and idx.remove(gone) == 0
        _, after = idx.search(q[:5], 5)
        assert not set(gone.tolist()) & set(after.ravel().tolist())
        np.testing.assert_array_equal(after[:, :4], before[:, 1:])
        assert idx.live == len(base) - len(set(gone.tolist()))
        if kind == "hnsw":
            assert idx.ntotal == len(base) and len(idx.tombstones) == 5 and not idx.needs_compaction
            idx.remove(ids[:100])
            assert idx.needs_compaction
            small = idx.compacted()
            assert small.ntotal == small.live == idx.live and not small.tombstones
            np.testing.assert_array_equal(small.search(q[:5], 4)[1], idx.search(q[:5], 4)[1])


def test_persist_roundtrip_key_and_corruption(tmp_path, data) -> None:
    base, q = data
    store = IndexStore(tmp_path)
    key = IndexKey("a" * 64, "fake-image@1")
    idx = VectorIndex.build(base[:1000], np.arange(1000), kind="hnsw")
    idx.remove(np.array([3, 7]))
    manifest = store.save(key, idx)
    loaded = store.load(key)
    assert loaded.reason == "loaded" and loaded.index.tombstones == {3, 7} and loaded.index.kind == "hnsw"
    np.testing.assert_array_equal(loaded.index.search(q, 10)[1], idx.search(q, 10)[1])
    assert store.load(IndexKey("b" * 64, "fake-image@1")).reason == "missing"
    assert store.load(IndexKey("a" * 64, "fake-image@2")).reason == "missing"
    idx_path, man_path = store.paths(key)
    # Same file name, different recorded key: refused.
    bad = json.loads(man_path.read_text()) | {"key": {"snapshot": "z", "image_version": "fake-image@1"}}
    man_path.write_text(json.dumps(bad))
    assert store.load(key).reason == "key mismatch"
    man_path.write_text(json.dumps(manifest))
    raw = bytearray(idx_path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte
    idx_path.write_bytes(bytes(raw))
    assert store.load(key).reason == "checksum mismatch"
    idx_path.write_bytes(bytes(raw[: len(raw) // 3]))  # truncated
    assert store.load(key).reason == "checksum mismatch"


def test_crash_during_write_never_looks_complete(tmp_path, data, monkeypatch) -> None:
    base, _ = data
    store = IndexStore(tmp_path)
    key = IndexKey("c" * 64, "fake-image@1")
    store.save(key, VectorIndex.build(base[:100], np.arange(100), kind="flat"))
    real_replace = os.replace

    def crash_on_manifest(src, dst):
        if str(dst).endswith(".manifest.json"):
            raise OSError("simulated crash before the manifest was renamed")
        return real_replace(src, dst)

    monkeypatch.setattr(index_mod.os, "replace", crash_on_manifest)
    with pytest.raises(OSError, match="simulated crash"):
        store.save(key, VectorIndex.build(base[:200], np.arange(200), kind="flat"))
    monkeypatch.setattr(index_mod.os, "replace", real_replace)
    # The new index file landed but the manifest still describes the old one: detected, not served.
    assert store.load(key).reason == "checksum mismatch"
