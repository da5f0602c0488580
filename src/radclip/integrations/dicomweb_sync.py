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

from radclip.integrations.dicomweb_client import DicomWebClient, DicomWebUnavailable
from radclip.integrations.ingest import Ingestor, IngestResult

# DicomWebUnavailable lives in dicomweb_client; callers catch it from here too
__all__ = ["DicomWebSync", "DicomWebUnavailable", "SyncStats"]
log = logging.getLogger(__name__)
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


@dataclass
class SyncStats:
    studies_seen: int = 0
    instances_new: int = 0  # screened or quarantined in this pass
    quarantined: int = 0
    skipped: int = 0  # already processed before this pass


class DicomWebSync:
    """See the module docstring."""

    def __init__(self, base_url: str, ingestor: Ingestor, state_path: Path, timeout_s: float = 30.0,
                 page_size: int = 100, transport: httpx.BaseTransport | None = None) -> None:  # fmt: skip
        self.client = DicomWebClient(base_url, timeout_s, page_size, transport)
        self.base = self.client.base
        self.ingestor = ingestor
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
        self.client.close()
        self._db.close()

    # -- QIDO-RS / WADO-RS (the shared client) -----------------------------------------------
    def find_studies(self) -> list[tuple[str, int | None]]:
        return self.client.find_studies()

    def find_instances(self, study_uid: str) -> list[tuple[str, str]]:
        return self.client.find_instances(study_uid)

    def fetch_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        return self.client.fetch_instance(study_uid, series_uid, sop_uid)

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
