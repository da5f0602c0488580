"""The access audit trail: append-only, hash-chained entries of who touched which study, when and with what outcome.

Each entry's hash covers its fields and the previous entry's hash, so editing, reordering or deleting
an entry in the middle breaks :meth:`AuditTrail.verify`. ``prev_hash`` is unique, so two writers that
raced for the same chain head cannot both commit (the loser re-reads the head and retries). Entries
carry a study pseudonym and a key name, never a patient name or MRN.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from sqlalchemy import Integer, String, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from radclip.engine import db

GENESIS = "0" * 64
FIELDS = ("at", "key_name", "role", "client", "action", "study", "outcome")


class AuditRow(db.Base):
    __tablename__ = "audit_log"
    __table_args__ = {"sqlite_autoincrement": True}  # ids never reused, so a deleted tail id stays a gap
    id: Mapped[int] = mapped_column(db.BigId, primary_key=True, autoincrement=True)
    at: Mapped[str] = mapped_column(String(32), index=True)  # ISO 8601 UTC text: hashed exactly as stored
    key_name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    client: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    study: Mapped[str | None] = mapped_column(String(64), nullable=True)
    outcome: Mapped[int] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    entry_hash: Mapped[str] = mapped_column(String(64))


@dataclass(frozen=True)
class AuditEntry:
    at: str
    key_name: str
    role: str
    client: str
    action: str
    study: str | None
    outcome: int


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    head: str
    problem: str | None = None  # the first broken entry, when not ok


def utc_stamp(t: dt.datetime | None = None) -> str:
    return (t or db.utcnow()).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def chain_hash(prev_hash: str, entry: AuditEntry) -> str:
    body = json.dumps([getattr(entry, f) for f in FIELDS], separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{prev_hash}|{body}".encode()).hexdigest()


class AuditTrail:
    """Append to, verify and export the trail in one engine database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = db.session_factory(engine)
        self._lock = (
            threading.Lock()
        )  # one appender per process; the unique prev_hash guards across processes

    def append(self, entry: AuditEntry, attempts: int = 20) -> str:
        """Append ``entry`` and return its hash; raises when the write fails (the caller must not answer 2xx)."""
        for attempt in range(attempts):
            with self._lock, self._session() as s:
                head = s.scalar(select(AuditRow.entry_hash).order_by(AuditRow.id.desc()).limit(1)) or GENESIS
                digest = chain_hash(head, entry)
                s.add(AuditRow(**asdict(entry), prev_hash=head, entry_hash=digest))
                try:
                    s.commit()
                    return digest
                except IntegrityError:  # another process appended on the same head: re-read it
                    s.rollback()
                    if attempt == attempts - 1:
                        raise
        raise RuntimeError("unreachable")

    def rows(self, since: str | None = None, until: str | None = None) -> Iterator[AuditRow]:
        query = select(AuditRow).order_by(AuditRow.id)
        if since:
            query = query.where(AuditRow.at >= since)
        if until:
            query = query.where(AuditRow.at < until)
        with self._session() as s:
            yield from s.scalars(query.execution_options(yield_per=1000))

    def verify(self) -> VerifyResult:
        prev, n = GENESIS, 0
        for row in self.rows():
            entry = AuditEntry(row.at, row.key_name, row.role, row.client, row.action, row.study, row.outcome)
            if row.prev_hash != prev:
                return VerifyResult(
                    False,
                    n,
                    prev,
                    f"entry {row.id}: links to {row.prev_hash[:12]}…, expected {prev[:12]}… (an entry before it was removed or reordered)",
                )
            if chain_hash(prev, entry) != row.entry_hash:
                return VerifyResult(
                    False,
                    n,
                    prev,
                    f"entry {row.id}: its fields do not match its hash (edited after it was written)",
                )
            prev, n = row.entry_hash, n + 1
        return VerifyResult(True, n, prev)

    def export(self, fmt: str, since: str | None = None, until: str | None = None) -> str:
        """The entries in [since, until) as ``csv`` or ``jsonl`` text, with their chain hashes."""
        cols = ("id", *FIELDS, "prev_hash", "entry_hash")
        records = [{c: getattr(r, c) for c in cols} for r in self.rows(since, until)]
        if fmt == "jsonl":
            return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        if fmt != "csv":
            raise ValueError(f"unknown export format {fmt!r}; use csv or jsonl")
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return buf.getvalue()
