"""A durable outbox for FHIR results, so a FHIR server outage loses nothing.

Every result is first written to a SQLite table (``$RADCLIP_HOME/integrations/outbox.db``,
``synchronous=FULL``: on disk before :meth:`DeliveryQueue.enqueue` returns), keyed by its
idempotency key (:func:`radclip.integrations.fhir_exchange.delivery_key`): enqueuing the
same result twice keeps one row. :meth:`DeliveryQueue.deliver_pending` sends undelivered
rows in order (:func:`radclip.integrations.fhir_exchange.deliver`); a row is marked
delivered only after the server accepted it. Because the writes use deterministic ids with
``PUT`` (and a conditional create for the ImagingStudy), a crash between "server accepted" and "marked delivered"
re-sends an update, never a duplicate. A server that is down stops the pass (rows stay
pending); a server that refuses a row (4xx) marks that row ``failed`` with the reason,
logged and kept for an operator (``radclip pacs outbox``), so one bad row never blocks the rest.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radclip.integrations.fhir_client import (
    FhirClient,
    FhirRequestError,
    FhirResourceInvalid,
    FhirUnavailableError,
)
from radclip.integrations.fhir_exchange import deliver

log = logging.getLogger(__name__)
SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  key TEXT NOT NULL UNIQUE,          -- idempotency key (study|sop|models); no patient identifiers
  study_uid TEXT,                    -- DICOM StudyInstanceUID, for operators
  payload TEXT NOT NULL,             -- fhir_exchange.report_delivery JSON; PHI: the patient reference
  status TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | failed
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT,
  created_at REAL NOT NULL,
  delivered_at REAL
);
"""


@dataclass
class DeliveryStats:
    delivered: int = 0
    failed: int = 0  # refused by the server (kept as 'failed')
    pending: int = 0  # still waiting after this pass
    server_down: bool = False  # the pass stopped because the server was unreachable


class DeliveryQueue:
    """See the module docstring. Safe to share between threads of one process."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    @classmethod
    def for_home(cls, home: Path) -> DeliveryQueue:
        return cls(Path(home).expanduser() / "integrations" / "outbox.db")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def enqueue(self, key: str, bundle: dict[str, Any], study_uid: str | None = None) -> bool:
        """Store a delivery payload (``report_delivery``) durably; False when this key was already queued (nothing changes)."""
        with self._lock:
            cur = self._db.execute("INSERT OR IGNORE INTO outbox (key, study_uid, payload, created_at) VALUES (?, ?, ?, ?)",
                                   (key, study_uid, json.dumps(bundle, separators=(",", ":")), time.time()))  # fmt: skip
            return cur.rowcount == 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall()
        return {"pending": 0, "delivered": 0, "failed": 0, **{s: int(n) for s, n in rows}}

    def rows(self, status: str | None = None) -> list[dict[str, Any]]:
        """Rows without payloads (for operators): seq, key, study_uid, status, attempts, last_error."""
        sql = "SELECT seq, key, study_uid, status, attempts, last_error FROM outbox"
        with self._lock:
            cur = self._db.execute(
                sql + (" WHERE status = ? ORDER BY seq" if status else " ORDER BY seq"),
                (status,) if status else (),
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def _pending(self, limit: int) -> list[tuple[int, str, str]]:
        with self._lock:
            return self._db.execute(
                "SELECT seq, key, payload FROM outbox WHERE status = 'pending' ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()

    def _mark(self, seq: int, status: str, error: str | None) -> None:
        with self._lock:
            self._db.execute("UPDATE outbox SET status = ?, attempts = attempts + 1, last_error = ?, delivered_at = ? WHERE seq = ?",
                             (status, error, time.time() if status == "delivered" else None, seq))  # fmt: skip

    def _note_attempt(self, seq: int, error: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?", (error, seq)
            )

    def deliver_pending(self, client: FhirClient, limit: int = 1000) -> DeliveryStats:
        """Send pending rows in order; stops at the first unreachable-server error (rows stay pending)."""
        stats = DeliveryStats()
        for seq, key, payload in self._pending(limit):
            try:
                deliver(client, json.loads(payload))
            except FhirUnavailableError as exc:
                self._note_attempt(seq, str(exc))
                log.warning("FHIR server unavailable; result #%d stays queued (%s)", seq, exc)
                stats.server_down = True
                break
            except (FhirRequestError, FhirResourceInvalid) as exc:
                self._mark(seq, "failed", str(exc))
                log.error(
                    "FHIR server refused result #%d (key %s): %s; kept as 'failed' in %s",
                    seq,
                    key,
                    exc,
                    self.path,
                )
                stats.failed += 1
                continue
            self._mark(seq, "delivered", None)
            stats.delivered += 1
            log.info("delivered result #%d to FHIR", seq)
        stats.pending = self.counts()["pending"]
        return stats


class DeliveryWorker:
    """Calls :meth:`DeliveryQueue.deliver_pending` every ``interval_s`` on a daemon thread (and on :meth:`kick`)."""

    def __init__(self, queue: DeliveryQueue, client: FhirClient, interval_s: float = 5.0) -> None:
        self.queue, self.client, self.interval_s = queue, client, interval_s
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name="radclip-fhir-delivery", daemon=True)

    def start(self) -> DeliveryWorker:
        self._thread.start()
        return self

    def kick(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.queue.deliver_pending(self.client)
            except Exception:  # keep the worker alive; the rows stay pending
                log.exception("FHIR delivery pass failed; retrying in %.1fs", self.interval_s)
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
