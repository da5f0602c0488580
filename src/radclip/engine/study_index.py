"""The study index: image embeddings of a dataset snapshot in FAISS, study metadata in the database.

:class:`StudyIndex` opens the index for (dataset snapshot, image-model version): it loads
the persisted one when its manifest key and checksum match and the database holds the
same number of live studies (a warm start embeds nothing), and otherwise rebuilds it
(changed key, corrupt or truncated file, missing metadata). Building embeds in batches,
reports ``progress(done, total)`` after each batch and checks ``cancel`` between batches;
a cancelled build writes nothing. ``add_studies`` / ``delete_study`` change the live index
and re-save it (HNSW deletes are tombstones, compacted past a threshold: see
:mod:`radclip.engine.index`).

Rows are images, unique per (index key, ``instance_id``: the SOP Instance UID), grouped by
``study_id``: a lateral sent after the PA of the same study is a second row. Concurrent adds of
the same image insert it once (``ON CONFLICT DO NOTHING``); the others report it as present.
Changes take the index lock only to change the index and write it to a temporary file; the
fsync, hash and rename that follow run outside it, so searches are not held up by a save.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from radclip.engine import db
from radclip.engine.encoders import ImageEmbedder, l2_normalise
from radclip.engine.index import IndexConfig, IndexKey, IndexStore, VectorIndex

log = logging.getLogger(__name__)
ProgressFn = Callable[[int, int], None]
CancelFlag = Callable[[], bool] | threading.Event


class BuildCancelled(RuntimeError):
    """The build was stopped through its cancel flag; nothing was written."""


class ImageSourceDown(RuntimeError):
    """The server images are fetched from is down: the build stops (rerun to resume) instead of quarantining."""


@dataclass(frozen=True)
class StudyRecord:
    study_id: str
    image_path: str  # absolute, or relative to the images root it was listed from
    patient_id: str | None = None
    view: str | None = None
    study_date: str | None = None
    findings: str | None = None  # report text or label summary, shown with retrieval hits
    source: str | None = None
    instance_id: str | None = None  # SOP Instance UID of the image; default: the study id (one image per study)

    @property
    def image_key(self) -> str:
        return self.instance_id or self.study_id


@dataclass
class OpenReport:
    key: IndexKey
    loaded: bool  # True: warm start from disk, nothing embedded
    reason: str  # why it was (re)built, or "loaded"
    embedded: int = 0
    failed: list[str] = field(default_factory=list)  # study ids whose image could not be read
    # {"study_id", "image_path", "reason"} of each image left out
    quarantine: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    kind: str = ""
    live: int = 0


@dataclass
class Embedded:
    """What :meth:`StudyIndex.embed_records` returns: the records kept (in order) with their vectors, and the rest."""

    kept: list[StudyRecord]
    vectors: np.ndarray  # (len(kept), dim) float32, L2-normalised
    failed: list[str] = field(default_factory=list)  # study ids whose image could not be read
    quarantine: list[dict[str, str]] = field(default_factory=list)  # {"study_id", "image_path", "reason"} each


def is_remote(image_path: str) -> bool:
    """True for an image fetched by URL (``dicomweb+http://…``) rather than read from a file."""
    return "://" in image_path


def content_tag(r: StudyRecord) -> str:
    """What stands for the image's content in a digest: the file size, or for a URL the image key.

    A DICOMweb instance is named by its SOP Instance UID, which by the standard never names other
    pixels, so the digest needs no request to the server and is stable across reruns.
    """
    if is_remote(r.image_path):
        return r.image_key
    p = Path(r.image_path)
    return str(p.stat().st_size if p.is_file() else -1)


def snapshot_of(records: Sequence[StudyRecord]) -> str:
    """sha256 over the sorted (study id, path, file size or UID) triples: the dataset snapshot version."""
    h = hashlib.sha256()
    for r in sorted(records, key=lambda r: r.study_id):
        h.update(f"{r.study_id}\t{r.image_path}\t{content_tag(r)}\n".encode())
    return h.hexdigest()


def quarantine_reason(exc: BaseException) -> str:
    """Why one image was left out of the index: ``"<ErrorType>: <message>"`` (bounded)."""
    return f"{type(exc).__name__}: {exc}"[:500]


def quarantine_entry(r: StudyRecord, exc: BaseException) -> dict[str, str]:
    return {"study_id": r.study_id, "image_path": r.image_path, "reason": quarantine_reason(exc)}


def default_load_fn(size: int = 224) -> Callable[[str], np.ndarray]:
    """Path -> contract tensor (1, S, S) through ``radclip.io.loader`` and ``radclip.io.contract``."""

    def load(path: str) -> np.ndarray:
        from radclip.io.contract import to_contract_tensor
        from radclip.io.loader import load_image

        return to_contract_tensor(load_image(path).pixels, size)

    return load


def _cancelled(cancel: CancelFlag | None) -> bool:
    if cancel is None:
        return False
    return cancel.is_set() if isinstance(cancel, threading.Event) else bool(cancel())


class StudyIndex:
    """See the module docstring. One instance per (database, index root, image model)."""

    def __init__(self, embedder: ImageEmbedder, database: str | Engine | None = None, root: str | Path | None = None,
                 config: IndexConfig | None = None, batch_size: int = 16,
                 load_fn: Callable[[str], np.ndarray] | None = None, migrate: bool = True) -> None:  # fmt: skip
        self.embedder = embedder
        self.engine = database if isinstance(database, Engine) else db.make_engine(database)
        if migrate:
            db.migrate(self.engine)
        self._sessions = db.session_factory(self.engine)
        self.store = IndexStore(root)
        self.config = config or IndexConfig()
        self.batch_size = batch_size
        self.load_fn = load_fn or default_load_fn(int(getattr(embedder, "input_size", 224)))
        self.key: IndexKey | None = None
        self.index: VectorIndex | None = None
        self._lock = threading.RLock()
        # Metadata rows never change once inserted (ids are not reused), so search results read them
        # from memory after the first time: a per-query SQL round trip cost ~1.5 ms of a /screen call.
        # Rows deleted here are evicted; a rebuild clears it.
        self._meta_cache: dict[int, dict[str, Any]] = {}

    # -- metadata -------------------------------------------------------------------------
    def _count(self, key: IndexKey) -> int:
        with self._sessions() as s:
            return int(s.scalar(select(func.count()).select_from(db.IndexItem).where(db.IndexItem.index_key == key.slug)))

    def _row(self, key: IndexKey, r: StudyRecord, now: Any) -> dict[str, Any]:
        return {"index_key": key.slug, "study_id": r.study_id, "instance_id": r.image_key, "patient_id": r.patient_id,
                "view": r.view, "study_date": r.study_date, "findings": r.findings, "source": r.source,
                "image_path": str(r.image_path), "added_at": now}  # fmt: skip

    def _insert(self, key: IndexKey, records: Sequence[StudyRecord]) -> np.ndarray:
        now = db.utcnow()
        with self._sessions.begin() as s:
            rows = [db.IndexItem(**self._row(key, r, now)) for r in records]
            s.add_all(rows)
            s.flush()
            return np.array([r.id for r in rows], np.int64)

    def _insert_new(self, key: IndexKey, records: Sequence[StudyRecord]) -> np.ndarray:
        """Insert each image unless a concurrent writer already did; its id, or -1 where it was present."""
        dialect = self.engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            return self._insert(key, records)
        insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
        now, out = db.utcnow(), []
        with self._sessions.begin() as s:
            for r in records:
                stmt = insert(db.IndexItem).values(**self._row(key, r, now))
                stmt = stmt.on_conflict_do_nothing(index_elements=["index_key", "instance_id"]).returning(db.IndexItem.id)
                got = s.execute(stmt).scalar_one_or_none()
                out.append(-1 if got is None else int(got))
        return np.array(out, np.int64)

    def metadata(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        ids = [int(i) for i in ids if int(i) >= 0]
        cache = self._meta_cache
        found = {i: m for i in ids if (m := cache.get(i)) is not None}  # one .get each: safe against a concurrent clear
        missing = [i for i in ids if i not in found]
        if missing:
            with self._sessions() as s:
                rows = s.scalars(select(db.IndexItem).where(db.IndexItem.id.in_(missing))).all()
            # No image_path: results leave the server, and an absolute path tells a client the
            # server's layout (issue 18). Routes that serve the file look the row up themselves.
            keys = ("study_id", "patient_id", "view", "study_date", "findings", "source")
            fresh = {r.id: {k: getattr(r, k) for k in keys} for r in rows}
            if len(cache) > 200_000:  # bounded: a few hundred bytes a row
                cache.clear()
            cache.update(fresh)
            found.update(fresh)
        return {i: dict(found[i]) for i in ids if i in found}

    # -- embedding ------------------------------------------------------------------------
    def embed_records(self, records: Sequence[StudyRecord], progress: ProgressFn | None = None,
                      cancel: CancelFlag | None = None) -> Embedded:  # fmt: skip
        """Decode and embed ``records`` in batches; an unreadable image is left out with its reason.

        The one step a different executor replaces (``engine.ray_corpus`` embeds on a Ray cluster);
        metadata and persistence stay here. :class:`ImageSourceDown` stops it instead.
        """
        out = Embedded([], np.zeros((0, self.embedder.dim), np.float32))
        vecs = []
        total = len(records)
        if progress:
            progress(0, total)
        for start in range(0, total, self.batch_size):
            if _cancelled(cancel):
                raise BuildCancelled(f"index build cancelled after {start}/{total} studies; nothing was written")
            batch, tensors = [], []
            for r in records[start : start + self.batch_size]:
                try:
                    tensors.append(self.load_fn(r.image_path))
                    batch.append(r)
                except ImageSourceDown:
                    raise
                except Exception as exc:  # one unreadable image must not stop a 100k build
                    log.warning("skipping study %s: cannot load %s (%s)", r.study_id, r.image_path, exc)
                    out.failed.append(r.study_id)
                    out.quarantine.append(quarantine_entry(r, exc))
            if tensors:
                vecs.append(l2_normalise(np.asarray(self.embedder.encode_images(np.stack(tensors)), np.float32)))
                out.kept.extend(batch)
            if progress:
                progress(min(start + self.batch_size, total), total)
        if vecs:
            out.vectors = np.concatenate(vecs)
        return out

    # -- lifecycle ------------------------------------------------------------------------
    def open(self, records: Sequence[StudyRecord], snapshot: str | None = None, progress: ProgressFn | None = None,
             cancel: CancelFlag | None = None) -> OpenReport:  # fmt: skip
        """Load the persisted index for this snapshot + model, or build it."""
        t0 = time.perf_counter()
        key = IndexKey(snapshot or snapshot_of(records), self.embedder.version)
        outcome = self.store.load(key, self.config)
        reason = outcome.reason
        if outcome.index is not None and self._count(key) == outcome.index.live:
            with self._lock:
                self.key, self.index = key, outcome.index
            if progress:
                progress(len(records), len(records))
            return OpenReport(key, True, "loaded", seconds=time.perf_counter() - t0, kind=outcome.index.kind,
                              live=outcome.index.live)  # fmt: skip
        if outcome.index is not None:
            reason = "metadata count differs from the index"
        records = self._with_added_rows(key, records)
        log.info("building index %s (%s)", key.slug, reason)
        done = self.embed_records(list(records), progress, cancel)
        kept, vecs, failed = done.kept, done.vectors, done.failed
        with self._sessions.begin() as s:
            s.execute(delete(db.IndexItem).where(db.IndexItem.index_key == key.slug))
        self._meta_cache.clear()
        ids = self._insert(key, kept)
        index = VectorIndex.build(vecs, ids, self.config)
        self.store.save(key, index, {"image_version": self.embedder.version})
        with self._lock:
            self.key, self.index = key, index
        return OpenReport(key, False, reason, embedded=len(kept), failed=failed, quarantine=done.quarantine,
                          seconds=time.perf_counter() - t0, kind=index.kind, live=index.live)  # fmt: skip

    def _with_added_rows(self, key: IndexKey, records: Sequence[StudyRecord]) -> list[StudyRecord]:
        """``records`` plus the images added to this index since (ingest, PACS) whose files still exist.

        A rebuild deletes the key's rows; without this, a crash between an ingest's row insert and its
        index save (counts differ on restart) rebuilt from the corpus alone and lost every ingested image.
        """
        listed = {r.image_key for r in records}
        with self._sessions() as s:
            rows = s.scalars(select(db.IndexItem).where(db.IndexItem.index_key == key.slug).order_by(db.IndexItem.id)).all()
        added = [StudyRecord(study_id=r.study_id, image_path=r.image_path, patient_id=r.patient_id, view=r.view,
                             study_date=r.study_date, findings=r.findings, source=r.source, instance_id=r.instance_id)
                 for r in rows if r.instance_id not in listed and Path(r.image_path).is_file()]  # fmt: skip
        if added:
            log.info("index %s: keeping %d image(s) added after the corpus listing", key.slug, len(added))
        return [*records, *added]

    def _require(self) -> tuple[IndexKey, VectorIndex]:
        if self.index is None or self.key is None:
            raise RuntimeError("the study index is not open; call StudyIndex.open(records) first")
        return self.key, self.index

    def add_studies(self, records: Sequence[StudyRecord], progress: ProgressFn | None = None,
                    cancel: CancelFlag | None = None) -> int:  # fmt: skip
        """Embed and add new images (images already indexed are skipped); returns how many were added."""
        key, _ = self._require()
        with self._sessions() as s:
            have = set(s.scalars(select(db.IndexItem.instance_id).where(db.IndexItem.index_key == key.slug)).all())
        new = list({r.image_key: r for r in records if r.image_key not in have}.values())
        done = self.embed_records(new, progress, cancel)
        kept, vecs = done.kept, done.vectors
        if not kept:
            return 0
        ids = self._insert_new(key, kept)  # a concurrent add of the same image may have won: -1 there
        fresh = ids >= 0
        if not fresh.any():
            return 0
        with self._lock:
            index = self._require()[1]  # read under the lock: a concurrent compaction may have replaced it
            index.add(vecs[fresh], ids[fresh])
            if index.outgrown:
                index = self.index = index.compacted()  # grew past a threshold: flat -> HNSW -> IVF-PQ
            staged = self.store.stage(key, index, {"image_version": self.embedder.version})
        self.store.commit(staged)
        return int(fresh.sum())

    def delete_study(self, study_id: str) -> bool:
        """Remove every image of one study from the index and the metadata; False when it was not indexed."""
        key, _ = self._require()
        with self._sessions.begin() as s:
            rows = s.scalars(select(db.IndexItem).where(db.IndexItem.index_key == key.slug,
                                                        db.IndexItem.study_id == study_id)).all()  # fmt: skip
            if not rows:
                return False
            vids = [r.id for r in rows]
            for row in rows:
                s.delete(row)
        for vid in vids:
            self._meta_cache.pop(vid, None)
        with self._lock:
            index = self._require()[1]
            index.remove(np.array(vids, np.int64))
            if index.needs_compaction:
                index = self.index = index.compacted()
            staged = self.store.stage(key, index, {"image_version": self.embedder.version})
        self.store.commit(staged)
        return True

    def search(self, queries: np.ndarray, k: int = 10) -> list[list[dict[str, Any]]]:
        """Top-``k`` studies per query vector: ``{"id", "similarity", **metadata}``, best first."""
        with self._lock:  # FAISS reads are not safe against a concurrent add/remove
            _, index = self._require()
            scores, ids = index.search(l2_normalise(np.atleast_2d(queries)), k)
        meta = self.metadata(ids.ravel().tolist())
        return [
            [{"id": int(i), "similarity": float(sc), **meta[int(i)]} for sc, i in zip(srow, irow, strict=True) if int(i) in meta]
            for srow, irow in zip(scores, ids, strict=True)
        ]
