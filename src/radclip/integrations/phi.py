"""What radclip may write about a patient outside the clinical systems: pseudonyms, never names.

Logs, metrics, the retrieval index and the integration state databases carry only
:func:`pseudonym` values (keyed HMAC-SHA256, truncated) of patient ids. DICOM UIDs are
kept as they are: they are the identifiers needed to link back to the PACS study and are
not patient-identifying on their own. Patient names are never read by the integration code.

The key lives in ``$RADCLIP_HOME/phi.key`` (created 0600 on first use) or in the environment
variable ``RADCLIP_PHI_KEY``; with the same key the same patient always maps to the same
pseudonym, so an authorised operator can still re-identify via the hospital's records.
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


HTTP_LOGGERS = ("httpx", "httpcore")  # they log request URLs, and FHIR search URLs carry patient ids


def quiet_http_loggers() -> None:
    """Keep URL-logging HTTP libraries at WARNING so patient ids in FHIR URLs stay out of the logs."""
    import logging

    for name in HTTP_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
