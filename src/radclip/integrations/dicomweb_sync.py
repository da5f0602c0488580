"""Pull new images from a DICOMweb server (QIDO-RS to find, WADO-RS to fetch) into the :class:`Ingestor`.

What has been processed is remembered per (server, SOP Instance UID) in SQLite
(``$RADCLIP_HOME/integrations/dicomweb_sync.db``): an instance is recorded right after it was
screened (or quarantined), so a restart of radclip or of the PACS in the middle of a pass
resumes where it stopped. A crash between "screened" and "recorded" re-screens that one
image, and the delivery queue's idempotency key keeps the FHIR result single. Studies
whose instance count (QIDO ``NumberOfStudyRelatedInstances``) matches what was already
processed are skipped without listing their instances.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from radclip.integrations.ingest import Ingestor, IngestResult

log = logging.getLogger(__name__)
TAG_STUDY_UID, TAG_SERIES_UID, TAG_SOP_UID, TAG_N_INSTANCES = "0020000D", "0020000E", "00080018", "00201208"
SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
  source TEXT NOT NULL,      -- the DICOMweb base URL
  sop_uid TEXT NOT NULL,
  study_uid TEXT NOT NULL,
  status TEXT NOT NULL,      -- processed | quarantined
  at REAL NOT NULL,
  PRIMARY KEY (source, sop_uid)
);
"""


class DicomWebUnavailable(RuntimeError):
    """The DICOMweb server could not be reached or answered with an error; run the sync again later."""


@dataclass
class SyncStats:
    studies_seen: int = 0
    instances_new: int = 0  # screened or quarantined in this pass
    quarantined: int = 0
    skipped: int = 0  # already processed before this pass


def _value(item: dict[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


def _qido_page(r: httpx.Response, path: str) -> list[dict[str, Any]]:
    """A QIDO-RS answer checked against PS3.18 F.2: an array of objects, each tag an object with a list ``Value``.

    Anything else (found by fuzz/fuzz_dicomweb.py: not JSON, a bare number, a tag that is a string,
    a count that is not an integer) is the server's fault, so it is DicomWebUnavailable, not a crash.
    """
    def bad(why: str) -> DicomWebUnavailable:
        return DicomWebUnavailable(f"QIDO-RS {path} answered {why}; expected a DICOM JSON array (PS3.18 F.2); check the server")

    try:
        page = r.json()
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise bad(f"with a body that is not JSON ({type(exc).__name__})") from None
    if not isinstance(page, list) or not all(isinstance(item, dict) for item in page):
        raise bad(f"with a JSON {type(page).__name__} that is not an array of objects")
    for item in page:
        for tag, element in item.items():
            if not isinstance(element, dict) or not isinstance(element.get("Value", []), list):
                raise bad(f"with tag {str(tag)[:16]!r} that is not an object with a list Value")
        count = _value(item, TAG_N_INSTANCES)
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise bad(f"with NumberOfStudyRelatedInstances {str(count)[:32]!r}, not a count")
    return page


def split_multipart(body: bytes, content_type: str) -> list[bytes]:
    """The parts of a ``multipart/related`` WADO-RS answer (each an ``application/dicom`` file)."""
    boundary = next(
        (
            p.split("=", 1)[1].strip().strip('"')
            for p in content_type.split(";")
            if p.strip().lower().startswith("boundary=")
        ),
        None,
    )
    if not boundary:
        raise DicomWebUnavailable(f"WADO-RS answer is not multipart (Content-Type {content_type!r})")
    parts = []
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if sep:
            parts.append(payload[:-2] if payload.endswith(b"\r\n") else payload)
    return parts


class DicomWebSync:
    """See the module docstring."""

    def __init__(self, base_url: str, ingestor: Ingestor, state_path: Path, timeout_s: float = 30.0,
                 page_size: int = 100, transport: httpx.BaseTransport | None = None) -> None:  # fmt: skip
        self.base = base_url.rstrip("/")
        self.ingestor = ingestor
        self.page_size = page_size  # QIDO-RS limit per page
        self._http = httpx.Client(timeout=timeout_s, transport=transport)
        Path(state_path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(state_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    @classmethod
    def for_home(cls, base_url: str, ingestor: Ingestor, home: Path, **kw: Any) -> DicomWebSync:
        return cls(base_url, ingestor, Path(home).expanduser() / "integrations" / "dicomweb_sync.db", **kw)

    def close(self) -> None:
        self._http.close()
        self._db.close()

    # -- HTTP -----------------------------------------------------------------------------
    def _get(self, path: str, accept: str, params: dict[str, Any] | None = None) -> httpx.Response:
        try:
            r = self._http.get(f"{self.base}/{path}", params=params, headers={"Accept": accept})
        except httpx.TransportError as exc:
            raise DicomWebUnavailable(
                f"DICOMweb server {self.base} unreachable ({type(exc).__name__}: {exc}); retry later"
            ) from None
        if r.status_code == 204:
            return r
        if r.status_code >= 400:
            raise DicomWebUnavailable(f"DICOMweb GET {path} answered HTTP {r.status_code}: {r.text[:200]}")
        return r

    def _qido(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            r = self._get(
                path, "application/dicom+json", {**params, "limit": self.page_size, "offset": offset}
            )
            page = _qido_page(r, path) if r.status_code != 204 and r.content else []
            out.extend(page)
            if len(page) < self.page_size:
                return out
            offset += len(page)

    def find_studies(self) -> list[tuple[str, int | None]]:
        """(StudyInstanceUID, number of instances or None) of every study on the server (QIDO-RS)."""
        rows = self._qido("studies", {"includefield": TAG_N_INSTANCES})
        return [
            (str(_value(r, TAG_STUDY_UID)), _value(r, TAG_N_INSTANCES))
            for r in rows
            if _value(r, TAG_STUDY_UID)
        ]

    def find_instances(self, study_uid: str) -> list[tuple[str, str]]:
        """(SeriesInstanceUID, SOPInstanceUID) of every instance of a study (QIDO-RS)."""
        rows = self._qido(f"studies/{study_uid}/instances", {})
        return [
            (str(_value(r, TAG_SERIES_UID)), str(_value(r, TAG_SOP_UID)))
            for r in rows
            if _value(r, TAG_SOP_UID)
        ]

    def fetch_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        """The DICOM file of one instance (WADO-RS, ``multipart/related; type=application/dicom``)."""
        r = self._get(
            f"studies/{study_uid}/series/{series_uid}/instances/{sop_uid}",
            'multipart/related; type="application/dicom"',
        )
        parts = split_multipart(r.content, r.headers.get("content-type", ""))
        if len(parts) != 1:
            raise DicomWebUnavailable(
                f"WADO-RS for SOP Instance UID {sop_uid} returned {len(parts)} parts, expected 1"
            )
        return parts[0]

    # -- state ----------------------------------------------------------------------------
    def processed_count(self, study_uid: str | None = None) -> int:
        sql, args = "SELECT COUNT(*) FROM instances WHERE source = ?", [self.base]
        if study_uid:
            sql, args = sql + " AND study_uid = ?", [*args, study_uid]
        with self._lock:
            return int(self._db.execute(sql, args).fetchone()[0])

    def _done(self, study_uid: str) -> set[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT sop_uid FROM instances WHERE source = ? AND study_uid = ?", (self.base, study_uid)
            )
            return {r[0] for r in rows}

    def _record(self, study_uid: str, sop_uid: str, status: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO instances (source, sop_uid, study_uid, status, at) VALUES (?, ?, ?, ?, ?)",
                             (self.base, sop_uid, study_uid, status, time.time()))  # fmt: skip

    # -- the pass ---------------------------------------------------------------------------
    def sync_once(self, on_instance: Callable[[IngestResult], None] | None = None) -> SyncStats:
        """Process every instance not processed before; raises :class:`DicomWebUnavailable` when the server fails."""
        stats = SyncStats()
        for study_uid, n_instances in self.find_studies():
            stats.studies_seen += 1
            if n_instances is not None and self.processed_count(study_uid) >= int(n_instances):
                stats.skipped += int(n_instances)
                continue
            done = self._done(study_uid)
            for series_uid, sop_uid in self.find_instances(study_uid):
                if sop_uid in done:
                    stats.skipped += 1
                    continue
                data = self.fetch_instance(study_uid, series_uid, sop_uid)
                result = self.ingestor.ingest(data, f"dicomweb:{self.base}", sop_uid_hint=sop_uid)
                self._record(study_uid, sop_uid, result.status)
                stats.instances_new += 1
                stats.quarantined += int(result.status == "quarantined")
                if on_instance is not None:
                    on_instance(result)
        log.info("DICOMweb sync of %s: %d studies, %d new instance(s) (%d quarantined), %d already done",
                 self.base, stats.studies_seen, stats.instances_new, stats.quarantined, stats.skipped)  # fmt: skip
        return stats
