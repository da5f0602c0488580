"""API keys in the engine database: salted scrypt hashes with a name, role, expiry, last use and revocation.

The key store lives on the engine floor (not in ``service/``) because both the HTTP service and the
``radclip keys`` command use it, and it needs only the engine database, no HTTP.

A key reads ``rck_<lookup>_<secret>``: ``lookup`` is a public random id that finds the row without
scanning (so one scrypt runs per unknown key, not one per stored key); only the scrypt hash of the
whole key is stored. A verified key is remembered in memory as an HMAC under a per-process secret, so
later requests skip scrypt while the row (revocation, expiry) is still read on every request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass

from sqlalchemy import DateTime, LargeBinary, String, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from radclip.engine import db

ROLES = ("reader", "ingest", "admin")
PREFIX = "rck_"
# scrypt cost: n=2**14, r=8 is the interactive-login setting of the scrypt paper (~16 MiB, tens of ms).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
LAST_USED_EVERY_S = (
    60.0  # last_used is written at most once a minute per key: a write per request is wasteful
)


class ApiKey(db.Base):
    """One API key; ``key_hash`` is scrypt(key, salt). The plaintext is never stored."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(db.BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    role: Mapped[str] = mapped_column(String(16))
    lookup: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    salt: Mapped[bytes] = mapped_column(LargeBinary)
    key_hash: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class KeyRequestError(ValueError):
    """A key command got a bad name, role or expiry."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a stored key's name and role, the bootstrap key, or the open local run."""

    name: str
    role: str


@dataclass(frozen=True)
class KeyInfo:
    name: str
    role: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    def status(self, now: dt.datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and _aware(self.expires_at) <= now:
            return "expired"
        return "active"


def _aware(t: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes even for timezone=True columns; they were written in UTC."""
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def hash_key(key: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        key.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 1024 * 1024, dklen=32
    )


class KeyStore:
    """Create, list, revoke and verify keys in one engine database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = db.session_factory(engine)
        self._verified: dict[str, bytes] = {}  # lookup -> HMAC(process secret, key) of a key scrypt accepted
        self._pepper = secrets.token_bytes(32)
        self._lock = threading.Lock()

    def create(self, name: str, role: str, expires_days: float | None = None) -> str:
        """Store a new key and return it; this is the only time the plaintext exists."""
        if role not in ROLES:
            raise KeyRequestError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        if (
            not name
            or len(name) > 64
            or not name.replace("-", "").replace("_", "").replace(".", "").isalnum()
        ):
            raise KeyRequestError(f"invalid key name {name!r}; use 1-64 letters, digits, '-', '_' or '.'")
        if expires_days is not None and expires_days <= 0:
            raise KeyRequestError(f"--expires must be a positive number of days, not {expires_days}")
        lookup, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_bytes(16)
        key = f"{PREFIX}{lookup}_{secret}"
        now = db.utcnow()
        expires = now + dt.timedelta(days=expires_days) if expires_days is not None else None
        with self._session() as s, s.begin():
            if s.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
                raise KeyRequestError(
                    f"a key named {name!r} already exists; revoke it first or pick another name"
                )
            s.add(ApiKey(name=name, role=role, lookup=lookup, salt=salt, key_hash=hash_key(key, salt), created_at=now,
                         expires_at=expires))  # fmt: skip
        return key

    def list(self) -> list[KeyInfo]:
        with self._session() as s:
            rows = s.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)).all()
        return [KeyInfo(r.name, r.role, _aware(r.created_at), r.expires_at and _aware(r.expires_at),
                        r.last_used_at and _aware(r.last_used_at), r.revoked_at and _aware(r.revoked_at)) for r in rows]  # fmt: skip

    def revoke(self, name: str) -> bool:
        """Revoke ``name``; False when no such active key exists. Effective on the next request."""
        with self._session() as s, s.begin():
            row = s.scalars(select(ApiKey).where(ApiKey.name == name)).one_or_none()
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = db.utcnow()
            return True

    def active_count(self) -> int:
        """Keys that are neither revoked nor expired (the open local mode applies when this is 0)."""
        now = db.utcnow()
        with self._session() as s:
            rows = s.execute(select(ApiKey.expires_at).where(ApiKey.revoked_at.is_(None))).all()
        return sum(1 for (exp,) in rows if exp is None or _aware(exp) > now)

    def any_keys(self) -> bool:
        with self._session() as s:
            return bool(s.scalar(select(func.count()).select_from(ApiKey)))

    def verify(self, key: str) -> Principal | None:
        """The key's principal when it is stored, unrevoked and unexpired; else None. Reads the row every call."""
        if not key.startswith(PREFIX) or key.count("_") < 2:
            return None
        lookup = key[len(PREFIX) :].split("_", 1)[0]
        with self._session() as s:
            row = s.scalars(select(ApiKey).where(ApiKey.lookup == lookup)).one_or_none()
        if row is None or row.revoked_at is not None:
            return None
        now = db.utcnow()
        if row.expires_at is not None and _aware(row.expires_at) <= now:
            return None
        fast = hmac.new(self._pepper, key.encode(), hashlib.sha256).digest()
        with self._lock:
            known = self._verified.get(lookup)
        if known is None or not hmac.compare_digest(known, fast):
            if not hmac.compare_digest(hash_key(key, row.salt), row.key_hash):
                return None
            with self._lock:
                self._verified[lookup] = fast
        if row.last_used_at is None or (now - _aware(row.last_used_at)).total_seconds() >= LAST_USED_EVERY_S:
            self._touch(row.id, now)
        return Principal(row.name, row.role)

    def _touch(self, key_id: int, now: dt.datetime) -> None:
        with self._session() as s, s.begin():
            row = s.get(ApiKey, key_id)
            if row is not None:
                row.last_used_at = now
