"""Keyed pseudonyms of patient ids (HMAC-SHA256), the one policy every floor stores instead of raw ids.

The key lives in ``$RADCLIP_HOME/phi.key`` (created 0600 on first use) or in the environment
variable ``RADCLIP_PHI_KEY``; with the same key the same patient always maps to the same
pseudonym, so an authorised operator can still re-identify via the hospital's records.
It sits on the io floor so the engine (manifest corpora) and the integrations share it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from pathlib import Path

KEY_ENV = "RADCLIP_PHI_KEY"
KEY_FILE = "phi.key"
PSEUDONYM_CHARS = 16  # hex characters of the HMAC kept (64 bits: collisions negligible per site)
_lock = threading.Lock()
_cache: dict[str, bytes] = {}


def phi_key(home: Path) -> bytes:
    """The pseudonymisation key: ``$RADCLIP_PHI_KEY``, else ``home/phi.key`` (created on first use)."""
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode()
    path = Path(home).expanduser() / KEY_FILE
    with _lock:
        if str(path) in _cache:
            return _cache[str(path)]
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        key = path.read_text().strip().encode()
        if not key:
            raise ValueError(f"{path} is empty; delete it to generate a new key or set {KEY_ENV}")
        _cache[str(path)] = key
        return key


class Pseudonymiser:
    """Maps identifiers to stable pseudonyms with one key (``pid-…`` for patients)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def for_home(cls, home: Path) -> Pseudonymiser:
        return cls(phi_key(home))

    def pseudonym(self, value: str | None, kind: str = "pid") -> str | None:
        if value is None or not str(value).strip():
            return None
        digest = hmac.new(self._key, f"{kind}:{str(value).strip()}".encode(), hashlib.sha256).hexdigest()
        return f"{kind}-{digest[:PSEUDONYM_CHARS]}"
