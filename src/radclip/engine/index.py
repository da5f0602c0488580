"""A FAISS inner-product index over L2-normalised embeddings, and its persistence.

* Exact search (``IndexFlatIP``) below ``hnsw_threshold`` vectors; HNSW (``IndexHNSWFlat``,
  inner product) at or above it. Both sit in an ``IndexIDMap2`` so vector ids are the
  database ids of the studies. At or above ``ivfpq_threshold``: IVF-PQ candidates re-ranked
  exactly from float16 vectors kept on disk (:mod:`radclip.engine.ivfpq`, docs/scaling.md).
* Deletion: the flat index removes ids for real. HNSW cannot remove, so deleted ids go in
  a tombstone set that search filters out (it over-fetches by the tombstone count, capped);
  when tombstones exceed ``rebuild_tombstone_fraction`` of the vectors the index is
  rebuilt from the surviving vectors (:meth:`VectorIndex.compacted`).
* :class:`IndexStore` persists one index per :class:`IndexKey` (dataset snapshot + image
  model version) under ``$RADCLIP_HOME/index/``: ``<key>.faiss`` plus ``<key>.manifest.json``
  holding the key, the file's sha256, sizes and tombstones. Both are written to a temporary
  file, fsynced and renamed, index first, manifest last, so a crash leaves either the old
  pair or an index whose checksum no longer matches; a mismatch is rebuilt, never served.
  An ivfpq index adds ``<key>.vectors.f16`` and ``<key>.rowids.i64``, checksummed in the same
  manifest and renamed before the index file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radclip.engine import ivfpq
from radclip.engine.ivfpq import RerankVectors

log = logging.getLogger(__name__)
MANIFEST_FORMAT = 1
KINDS = ("flat", "hnsw", "ivfpq")  # in order of size
SIDECARS = {"vectors": "vectors.f16", "rowids": "rowids.i64"}  # ivfpq's extra files (name -> suffix)


@dataclass(frozen=True)
class IndexConfig:
    hnsw_threshold: int = 20_000  # below: exact IndexFlatIP; at or above: HNSW
    hnsw_m: int = 32  # HNSW graph degree (memory ~ 2*M*4 bytes per vector on top of the vectors)
    ef_construction: int = 80  # HNSW build beam width (build time vs graph quality)
    ef_search: int = 256  # HNSW query beam width: recall@10 0.978 at 1M vectors, p95 7.7 ms (benchmarks/results/index_bench.json)
    rebuild_tombstone_fraction: float = 0.2  # rebuild HNSW when this share of vectors is deleted
    max_overfetch: int = 1024  # cap on extra results fetched to skip tombstones
    # Archive scale (docs/scaling.md, benchmarks/results/archive_index_bench.json): IVF-PQ candidates,
    # exact re-rank from a float16 vector file on disk.
    ivfpq_threshold: int = 2_000_000  # at or above: IVF-PQ (HNSW would hold 2.3 GB per 1M vectors in RAM)
    ivf_nlist: int = 0  # inverted lists; 0 = ~4*sqrt(n), a power of two, at most 4,096 (ivfpq.auto_nlist)
    ivf_pq_m: int = 64  # PQ bytes per vector (512-d: 8 dims per sub-quantizer)
    ivf_pq_nbits: int = 8  # bits per PQ sub-code
    # Mixture vectors, 1 thread, nprobe=32: rerank 800 -> recall@10 0.977 at 1M, 0.912 at 4M, 0.819 at 10M;
    # at 10M rerank 2,400 -> 0.942, p95 8.3 ms (PQ ranking, not list coverage, limits recall)
    ivf_nprobe: int = 32  # lists scanned per query
    ivf_rerank: int = 0  # candidates re-scored exactly from the vector file; 0 = by size (ivfpq.auto_rerank)
    ivf_train_size: int = 100_000  # vectors sampled to train k-means + PQ (at least 39 per list is enforced)
    ivf_kmeans_iter: int = 10  # k-means iterations, coarse and PQ (FAISS's default is 25)
    # tell the kernel the candidate rows' pages before reading them: concurrent reads when the vector file is
    # not cached (10M, R 2,400, evicted: p50 27.5 ms instead of 171 ms on this host), ~1 ms more when it is
    ivf_prefetch: bool = True
    ivf_scratch_dir: str | None = None  # where an unsaved IVF-PQ index keeps its vector file (None: the temp dir)


@dataclass(frozen=True)
class IndexKey:
    snapshot: str  # sha256 of the dataset snapshot (manifest rows / file list)
    image_version: str  # image-model version that produced the vectors

    @property
    def slug(self) -> str:
        model = re.sub(r"[^A-Za-z0-9._-]+", "_", self.image_version)[:80]
        return f"{model}-{self.snapshot[:16]}"


def _faiss() -> Any:
    import faiss  # heavy; imported where used

    return faiss


class VectorIndex:
    """Ids + vectors with exact, HNSW or IVF-PQ (re-ranked) search; see the module docstring."""

    def __init__(self, dim: int, kind: str, config: IndexConfig | None = None, _index: Any = None,
                 tombstones: set[int] | None = None, _vectors: RerankVectors | None = None) -> None:  # fmt: skip
        if kind not in KINDS:
            raise ValueError(f"index kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
        self.dim, self.kind, self.config = int(dim), kind, config or IndexConfig()
        self.tombstones: set[int] = set(tombstones or ())
        # ivfpq: the full vectors on disk (re-ranking); the FAISS index is made when first trained
        self._vectors = (_vectors or RerankVectors(self.dim, scratch_dir=self.config.ivf_scratch_dir)) if kind == "ivfpq" else None
        self._index = _index if _index is not None else self._new()
        self._apply_search_params()

    @staticmethod
    def kind_for(n: int, config: IndexConfig) -> str:
        """The kind :meth:`build` picks for ``n`` vectors."""
        return "ivfpq" if n >= config.ivfpq_threshold else "hnsw" if n >= config.hnsw_threshold else "flat"

    @property
    def outgrown(self) -> bool:
        """True when the live count has crossed the next kind's threshold (rebuild with :meth:`compacted`)."""
        return KINDS.index(self.kind_for(self.live, self.config)) > KINDS.index(self.kind)

    def _ivf_params(self, n: int) -> ivfpq.IVFPQParams:
        c = self.config
        nlist = c.ivf_nlist or ivfpq.auto_nlist(n)
        return ivfpq.IVFPQParams(nlist, c.ivf_pq_m, c.ivf_pq_nbits, c.ivf_nprobe,
                                 max(c.ivf_train_size, 39 * nlist), c.ivf_kmeans_iter)  # fmt: skip

    def _new(self) -> Any:
        faiss = _faiss()
        if self.kind == "ivfpq":
            return None  # trained on the first add (needs data)
        if self.kind == "flat":
            inner = faiss.IndexFlatIP(self.dim)
        else:
            inner = faiss.IndexHNSWFlat(self.dim, self.config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = self.config.ef_construction
        return faiss.IndexIDMap2(inner)

    def _apply_search_params(self) -> None:
        if self.kind == "hnsw":
            _faiss().downcast_index(self._index.index).hnsw.efSearch = self.config.ef_search
        elif self.kind == "ivfpq" and self._index is not None:
            self._index.nprobe = self.config.ivf_nprobe

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, config: IndexConfig | None = None, kind: str | None = None) -> VectorIndex:
        config = config or IndexConfig()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        kind = kind or cls.kind_for(len(vectors), config)
        out = cls(vectors.shape[1], kind, config)
        out.add(vectors, ids)
        return out

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal) if self._index is not None else 0

    @property
    def live(self) -> int:
        return self.ntotal - len(self.tombstones)

    def ids(self) -> np.ndarray:
        if self._vectors is not None:
            return self._vectors.row_ids[self._vectors.live_rows()]
        return _faiss().vector_to_array(self._index.id_map).astype(np.int64)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(vectors) != len(ids):
            raise ValueError(f"expected ({len(ids)}, {self.dim}) vectors for {len(ids)} ids, got {vectors.shape}")
        if not len(ids):
            return
        if self._vectors is None:
            self._index.add_with_ids(vectors, ids)
            return
        if self._index is None:
            p = self._ivf_params(len(vectors))
            self._index = ivfpq.new_trained(ivfpq.training_sample(vectors, p.train_size), p)
        self._index.add_with_ids(vectors, self._vectors.append(vectors, ids))  # IVF ids are row numbers

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids``; returns how many were present. HNSW: tombstoned (see module docstring)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.kind == "flat":
            return int(self._index.remove_ids(_faiss().IDSelectorBatch(ids)))
        if self._vectors is not None:
            rows = self._vectors.rows_of(ids)
            if len(rows):
                self._index.remove_ids(_faiss().IDSelectorBatch(rows))
                self._vectors.row_ids[rows] = -1
            return len(rows)
        present = set(self.ids().tolist()) & set(ids.tolist())
        new = present - self.tombstones
        self.tombstones |= new
        return len(new)

    @property
    def needs_compaction(self) -> bool:
        return bool(self.tombstones) and len(self.tombstones) >= self.config.rebuild_tombstone_fraction * max(self.ntotal, 1)

    def vectors_and_ids(self) -> tuple[np.ndarray, np.ndarray]:
        if self._vectors is not None:
            rows = self._vectors.live_rows()
            return self._vectors.take(rows, prefetch=False), self._vectors.row_ids[rows]
        faiss = _faiss()
        inner = faiss.downcast_index(self._index.index)
        vecs = inner.reconstruct_n(0, self.ntotal) if self.ntotal else np.zeros((0, self.dim), np.float32)
        return np.asarray(vecs, dtype=np.float32), self.ids()

    def compacted(self) -> VectorIndex:
        """A fresh index of the surviving vectors (kind re-chosen by size)."""
        vecs, ids = self.vectors_and_ids()
        keep = ~np.isin(ids, np.fromiter(self.tombstones, dtype=np.int64, count=len(self.tombstones)))
        return VectorIndex.build(vecs[keep], ids[keep], self.config)

    @property
    def rerank_depth(self) -> int:
        """ivfpq: candidates re-scored exactly per query (the config's value, or by size when it is 0)."""
        return self.config.ivf_rerank or ivfpq.auto_rerank(self.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, ids) per query row, best first; missing slots are (-inf, -1)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(int(k), 1)
        extra = min(len(self.tombstones), self.config.max_overfetch)
        fetch = min(k + extra, max(self.ntotal, 1))
        if self.ntotal == 0:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        # OpenMP's thread count is per calling thread, so set it here, in the request's thread: a few
        # queries run single-threaded (a team costs more than it saves, and its idle threads then
        # busy-wait, taking a core from the model sessions: /screen's model stage 7.0 -> 4.4 ms).
        _faiss().omp_set_num_threads(1 if len(queries) <= 16 else (os.cpu_count() or 1))
        if self._vectors is not None:
            _, rows = self._index.search(queries, min(max(k, self.rerank_depth), self.ntotal))
            return ivfpq.rerank(queries, rows, self._vectors, k, self.config.ivf_prefetch)
        scores, ids = self._index.search(queries, fetch)
        if not self.tombstones:
            return _pad(scores, ids, k)
        out_s = np.full((len(queries), k), -np.inf, np.float32)
        out_i = np.full((len(queries), k), -1, np.int64)
        dead = self.tombstones
        for r in range(len(queries)):
            keep = [j for j in range(fetch) if ids[r, j] >= 0 and int(ids[r, j]) not in dead][:k]
            out_s[r, : len(keep)], out_i[r, : len(keep)] = scores[r, keep], ids[r, keep]
        return out_s, out_i

    def memory_bytes(self) -> int:
        """Approximate resident size (serialised size of the index; ivfpq: + row ids, vectors on disk excluded)."""
        if self._index is None:
            return 0
        extra = self._vectors.row_ids.nbytes if self._vectors is not None else 0
        return int(_faiss().serialize_index(self._index).nbytes) + extra


def _pad(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
    if scores.shape[1] >= k:
        return scores[:, :k], ids[:, :k]
    n = len(scores)
    pad_s = np.full((n, k - scores.shape[1]), -np.inf, np.float32)
    pad_i = np.full((n, k - ids.shape[1]), -1, np.int64)
    return np.hstack([scores, pad_s]), np.hstack([ids, pad_i])


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _sync_and_hash(path: Path) -> dict[str, Any]:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class StagedSave:
    key: IndexKey
    path: Path  # the index written to a temporary file of its own
    info: dict[str, Any]  # the manifest fields taken from the index when it was written
    seq: int  # staging order: a commit never replaces a newer state with an older one
    sidecars: tuple[tuple[str, Path], ...] = ()  # ivfpq: (name, temporary file) of the vectors and row ids


@dataclass
class LoadOutcome:
    index: VectorIndex | None
    reason: str  # "loaded", or why it was not ("missing", "key mismatch", "checksum mismatch", ...)
    manifest: dict[str, Any] = field(default_factory=dict)


class IndexStore:
    """Persisted indexes under ``root`` (default ``$RADCLIP_HOME/index``), one pair of files per key."""

    def __init__(self, root: str | Path | None = None) -> None:
        if root is None:
            from radclip.settings import get_settings

            root = get_settings().home / "index"
        self.root = Path(root)
        self._order, self._commit_lock = threading.Lock(), threading.Lock()
        self._staged = 0
        self._committed: dict[IndexKey, int] = {}

    def paths(self, key: IndexKey) -> tuple[Path, Path]:
        return self.root / f"{key.slug}.faiss", self.root / f"{key.slug}.manifest.json"

    def sidecar_path(self, key: IndexKey, name: str) -> Path:
        """An ivfpq index's extra files: ``<key>.vectors.f16`` (float16 rows), ``<key>.rowids.i64`` (row -> id)."""
        return self.root / f"{key.slug}.{SIDECARS[name]}"

    def save(self, key: IndexKey, index: VectorIndex, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.commit(self.stage(key, index, extra))

    def stage(self, key: IndexKey, index: VectorIndex, extra: dict[str, Any] | None = None) -> StagedSave:
        """The part of a save that reads ``index``: write it to a temporary file of its own (no fsync).

        Callers hold their index lock for this only; :meth:`commit` (fsync, hash, rename) runs
        outside it, so searches are not blocked while the file is synced and hashed.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        idx_path, _ = self.paths(key)
        if index._index is None:
            raise ValueError("an ivfpq index with no vectors yet is untrained and has nothing to save; add vectors first")
        tmp = idx_path.with_name(f".{idx_path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}")
        _faiss().write_index(index._index, str(tmp))
        sidecars: list[tuple[str, Path]] = []
        if index._vectors is not None:
            for name in SIDECARS:
                p = self.sidecar_path(key, name)
                sidecars.append((name, p.with_name(f".{p.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}")))
            index._vectors.write_copy(sidecars[0][1], sidecars[1][1])
        info = {"kind": index.kind, "dim": index.dim, "ntotal": index.ntotal, "live": index.live,
                "tombstones": sorted(index.tombstones), "config": asdict(index.config), **(extra or {})}  # fmt: skip
        with self._order:
            self._staged += 1
            return StagedSave(key, tmp, info, self._staged, tuple(sidecars))

    def commit(self, staged: StagedSave) -> dict[str, Any]:
        """fsync, hash and rename a staged file, then its manifest; an older stage than the last committed is dropped."""
        idx_path, man_path = self.paths(staged.key)
        with self._commit_lock:
            if staged.seq <= self._committed.get(staged.key, 0):
                for p in (staged.path, *(tmp for _, tmp in staged.sidecars)):
                    p.unlink(missing_ok=True)  # a newer state of the same index is already on disk
                return {}
            sidecars = {}
            for name, tmp in staged.sidecars:  # extra files first, the index next, the manifest last
                final = self.sidecar_path(staged.key, name)
                sidecars[name] = {"file": final.name, **_sync_and_hash(tmp)}
                os.replace(tmp, final)
            checked = _sync_and_hash(staged.path)
            os.replace(staged.path, idx_path)
            manifest = {"format": MANIFEST_FORMAT, "key": asdict(staged.key), "file": idx_path.name, **checked,
                        **staged.info}  # fmt: skip
            if sidecars:
                manifest["sidecars"] = sidecars
            _atomic_write_bytes(man_path, json.dumps(manifest, indent=1).encode())
            self._committed[staged.key] = staged.seq
        return manifest

    def load(self, key: IndexKey, config: IndexConfig | None = None) -> LoadOutcome:
        """Load the index for ``key`` if its manifest matches and its checksum verifies."""
        idx_path, man_path = self.paths(key)
        if not man_path.is_file() or not idx_path.is_file():
            return LoadOutcome(None, "missing")
        try:
            manifest = json.loads(man_path.read_text())
        except (OSError, ValueError) as exc:
            return LoadOutcome(None, f"unreadable manifest ({exc})")
        if manifest.get("format") != MANIFEST_FORMAT or manifest.get("key") != asdict(key):
            return LoadOutcome(None, "key mismatch", manifest)
        if idx_path.stat().st_size != manifest.get("bytes") or sha256_file(idx_path) != manifest.get("sha256"):
            log.warning("index file %s fails its checksum; it will be rebuilt", idx_path)
            return LoadOutcome(None, "checksum mismatch", manifest)
        try:
            raw = _faiss().read_index(str(idx_path))
        except RuntimeError as exc:
            return LoadOutcome(None, f"unreadable index ({exc})", manifest)
        if raw.ntotal != manifest["ntotal"] or raw.d != manifest["dim"]:
            return LoadOutcome(None, "size mismatch", manifest)
        cfg = config or IndexConfig(**manifest.get("config", {}))
        vectors = None
        if manifest["kind"] == "ivfpq":
            bad = self._bad_sidecar(key, manifest.get("sidecars", {}))
            if bad:
                log.warning("index %s: %s; it will be rebuilt", key.slug, bad)
                return LoadOutcome(None, bad, manifest)
            row_ids = np.fromfile(self.sidecar_path(key, "rowids"), dtype=np.int64)
            vectors = RerankVectors(raw.d, self.sidecar_path(key, "vectors"), row_ids, cfg.ivf_scratch_dir)
            if int((row_ids >= 0).sum()) != raw.ntotal:
                return LoadOutcome(None, "size mismatch", manifest)
        index = VectorIndex(raw.d, manifest["kind"], cfg, _index=raw, tombstones=set(manifest.get("tombstones", ())),
                            _vectors=vectors)  # fmt: skip
        return LoadOutcome(index, "loaded", manifest)

    def _bad_sidecar(self, key: IndexKey, listed: dict[str, Any]) -> str:
        """Why an ivfpq index's extra files can't be served ("" when they verify)."""
        for name in SIDECARS:
            path, want = self.sidecar_path(key, name), listed.get(name, {})
            if not path.is_file() or not want:
                return f"missing {name} file"
            if path.stat().st_size != want.get("bytes") or sha256_file(path) != want.get("sha256"):
                return "checksum mismatch"
        return ""

    def remove(self, key: IndexKey) -> None:
        for p in (*self.paths(key), *(self.sidecar_path(key, n) for n in SIDECARS)):
            p.unlink(missing_ok=True)
