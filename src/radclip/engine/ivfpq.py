"""Archive-scale search: FAISS IVF-PQ candidates re-ranked exactly from a memory-mapped float16 vector file.

:class:`~radclip.engine.index.VectorIndex` uses this for ``kind="ivfpq"``. The FAISS index holds
only PQ codes (``m`` bytes per vector at 8 bits) and row numbers; the full vectors live on disk
in :class:`RerankVectors` (``rows x dim`` float16, row order = add order) and only the top
``rerank`` candidate rows of each query are read back, so memory stays ~``m + 16`` bytes per
vector while the returned scores are exact cosines (float16 storage: error below 1e-3).
A row number maps to its database id through ``row_ids``; a deleted row keeps its place on disk
(id set to -1) and is removed from the IVF lists for real (``remove_ids``).
"""

from __future__ import annotations

import math
import mmap
import os
import shutil
import tempfile
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

VECTOR_DTYPE = np.float16


@dataclass(frozen=True)
class IVFPQParams:
    nlist: int  # inverted lists (k-means centroids of the coarse quantizer)
    m: int  # PQ sub-quantizers (bytes per code at 8 bits); must divide dim
    nbits: int  # bits per sub-quantizer code
    nprobe: int  # lists scanned per query (the re-rank depth is the index's: VectorIndex.rerank_depth)
    train_size: int  # vectors sampled for k-means + PQ training
    kmeans_iter: int  # k-means iterations (coarse quantizer and PQ codebooks)


MAX_AUTO_NLIST = 4_096  # the list count every archive benchmark used (1M, 4M, 10M); larger was not measured


def auto_nlist(n: int) -> int:
    """~4 sqrt(n) lists, a power of two, at most :data:`MAX_AUTO_NLIST`, with at least 39 training points
    per list (FAISS's own floor)."""
    target = min(2 ** round(math.log2(max(4 * math.sqrt(max(n, 1)), 1))), MAX_AUTO_NLIST)
    cap = 2 ** int(math.log2(max(n // 39, 1)))
    return int(max(1, min(target, cap)))


RERANK_FLOOR, RERANK_PER_MILLION = 800, 240


def auto_rerank(n: int) -> int:
    """Candidates to re-rank exactly for an index of ``n`` vectors: max(800, 240 per started million).

    More vectors crowd each query's neighbourhood, so the true top-10 sit deeper in the PQ ranking.
    Measured at nprobe 32 (benchmarks/results/archive_index_bench.json): R 800 gives recall@10 0.977 at
    1M, 0.912 at 4M and 0.819 at 10M; at 10M R 2,400 (this rule's value) gives 0.942, p95 8.3 ms.
    """
    return max(RERANK_FLOOR, RERANK_PER_MILLION * math.ceil(max(n, 0) / 1_000_000))


def new_trained(sample: np.ndarray, p: IVFPQParams) -> Any:
    """An empty, trained IVF-PQ index (inner product) for vectors like ``sample``."""
    import faiss

    dim = sample.shape[1]
    if dim % p.m:
        raise ValueError(f"IVF-PQ needs dim ({dim}) divisible by IndexConfig.ivf_pq_m ({p.m}); pick a divisor such as {dim // 8}")
    if len(sample) < p.nlist:
        raise ValueError(f"IVF-PQ training needs at least nlist={p.nlist} vectors, got {len(sample)}: "
                         "build it from more vectors or lower IndexConfig.ivf_nlist")  # fmt: skip
    index = faiss.index_factory(dim, f"IVF{p.nlist},PQ{p.m}x{p.nbits}", faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = p.kmeans_iter
    ivf = faiss.downcast_index(index)
    ivf.pq.cp.niter = p.kmeans_iter
    ivf.do_polysemous_training = False  # only used by polysemous search (not ours); 7x the training time
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    index.nprobe = p.nprobe
    return index


def training_sample(vectors: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    if len(vectors) <= size:
        return vectors
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), size, replace=False))
    return vectors[rows]


class RerankVectors:
    """``rows x dim`` float16 vectors in a file (memory-mapped, read by row) plus row -> database id.

    A file opened from the store is never written: the first :meth:`append` copies it to a private
    scratch file (removed when this object goes away), so a saved index stays as checksummed.
    """

    def __init__(self, dim: int, path: Path | None = None, row_ids: np.ndarray | None = None,
                 scratch_dir: str | None = None) -> None:  # fmt: skip
        self.dim = int(dim)
        self.row_ids = np.asarray(row_ids if row_ids is not None else np.zeros(0, np.int64), dtype=np.int64).copy()
        self._scratch_dir = scratch_dir
        self.path: Path | None = Path(path) if path is not None else None
        self._owned = False
        self._mm: np.memmap | None = None
        if self.path is not None and self.path.stat().st_size != self.rows * self.dim * 2:
            raise ValueError(f"{self.path}: {self.path.stat().st_size} bytes, expected {self.rows} rows of {self.dim} float16")

    @property
    def rows(self) -> int:
        return len(self.row_ids)

    def _own(self) -> Path:
        """A private, writable file holding the current rows (copied from a store file once)."""
        if self._owned and self.path is not None:
            return self.path
        d = Path(self._scratch_dir or tempfile.gettempdir())
        d.mkdir(parents=True, exist_ok=True)
        scratch = d / f"radclip-ivfpq-{os.getpid()}-{uuid.uuid4().hex[:12]}.f16"
        if self.path is not None:
            shutil.copyfile(self.path, scratch)
        else:
            scratch.touch()
        weakref.finalize(self, _unlink, scratch)
        self.path, self._owned, self._mm = scratch, True, None
        return scratch

    def append(self, vectors: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Write rows at the end; returns their row numbers."""
        path = self._own()
        with open(path, "ab") as f:
            f.write(np.ascontiguousarray(vectors, dtype=VECTOR_DTYPE).tobytes())
        start = self.rows
        self.row_ids = np.concatenate([self.row_ids, np.asarray(ids, np.int64)])
        self._mm = None
        return np.arange(start, self.rows, dtype=np.int64)

    def _map(self) -> np.memmap:
        if self._mm is None:
            assert self.path is not None
            self._mm = np.memmap(self.path, dtype=VECTOR_DTYPE, mode="r", shape=(self.rows, self.dim))
            raw = getattr(self._mm, "_mmap", None)
            if raw is not None and hasattr(mmap, "MADV_RANDOM"):
                raw.madvise(mmap.MADV_RANDOM)  # candidate rows are scattered: no read-ahead
        return self._mm

    def take(self, rows: np.ndarray, prefetch: bool = True) -> np.ndarray:
        """float32 copies of ``rows`` (sorted row numbers read in file order).

        ``prefetch``: first tell the kernel every page about to be read (``madvise(WILLNEED)`` on this
        mapping, :func:`page_ranges`), so the pages not in the page cache are read concurrently rather
        than one fault at a time. 10M vectors, R 2,400, file evicted: p50 27.5 ms instead of 171 ms on this
        host's virtio disk; ~1 ms more when every row is cached (docs/scaling.md).
        """
        if not len(rows):
            return np.zeros((0, self.dim), np.float32)
        mm = self._map()
        raw = getattr(mm, "_mmap", None)
        if prefetch and raw is not None and hasattr(mmap, "MADV_WILLNEED"):
            for start, length in page_ranges(rows, self.dim * np.dtype(VECTOR_DTYPE).itemsize, mmap.PAGESIZE):
                raw.madvise(mmap.MADV_WILLNEED, start, length)
        return np.asarray(mm[rows], dtype=np.float32)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Row numbers of the live rows whose database id is in ``ids``."""
        return np.flatnonzero(np.isin(self.row_ids, np.asarray(ids, np.int64)) & (self.row_ids >= 0)).astype(np.int64)

    def live_rows(self) -> np.ndarray:
        return np.flatnonzero(self.row_ids >= 0).astype(np.int64)

    def write_copy(self, vectors_to: Path, ids_to: Path) -> None:
        """Copy the vector file and write the row ids (the store's staging step)."""
        if self.path is None or self.rows == 0:
            vectors_to.write_bytes(b"")
        else:
            shutil.copyfile(self.path, vectors_to)
        self.row_ids.tofile(ids_to)


def page_ranges(rows: np.ndarray, row_bytes: int, page: int) -> list[tuple[int, int]]:
    """(start, length) of the page-aligned byte ranges holding ``rows`` (sorted), touching pages merged."""
    first = rows.astype(np.int64) * row_bytes // page
    last = ((rows.astype(np.int64) + 1) * row_bytes - 1) // page
    out: list[tuple[int, int]] = []
    lo, hi = int(first[0]), int(last[0])
    for f, la in zip(first[1:].tolist(), last[1:].tolist(), strict=True):
        if f <= hi + 1:
            hi = max(hi, la)
        else:
            out.append((lo * page, (hi - lo + 1) * page))
            lo, hi = f, la
    out.append((lo * page, (hi - lo + 1) * page))
    return out


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def rerank(queries: np.ndarray, cand: np.ndarray, vectors: RerankVectors, k: int,
           prefetch: bool = True) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Exact top-``k`` (scores, database ids) among each query's candidate rows (-1 = none)."""
    out_s = np.full((len(queries), k), -np.inf, np.float32)
    out_i = np.full((len(queries), k), -1, np.int64)
    for r, q in enumerate(queries):
        rows = np.unique(cand[r][cand[r] >= 0])  # sorted: the file is read front to back
        if not len(rows):
            continue
        scores = vectors.take(rows, prefetch) @ q
        top = np.argsort(-scores, kind="stable")[:k]
        out_s[r, : len(top)], out_i[r, : len(top)] = scores[top], vectors.row_ids[rows[top]]
    return out_s, out_i
