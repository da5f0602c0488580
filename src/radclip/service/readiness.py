"""What /readyz and 503 problems may say about a failed component: its name and a safe reason, never exception text."""

from __future__ import annotations

import re
from typing import Any

# Exception messages carry server paths, URLs and database details; the log keeps them.
SEE_LOG = "see the server log"
_TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_SAFE_INDEX_DETAILS = ("cancelled at shutdown; nothing was persisted",)
WARMING_RETRY_AFTER_S = 5  # Retry-After of a 503 while the index warms (the documented contract)


def warming_headers(state: str) -> dict[str, str]:
    """``Retry-After`` while the index is being built; nothing when it failed (no ETA to promise)."""
    return {"Retry-After": str(WARMING_RETRY_AFTER_S)} if state == "warming" else {}


def safe_reason(error: str | None) -> str:
    """``"FileNotFoundError: /srv/m.safetensors"`` -> ``"FileNotFoundError (see the server log)"``."""
    if not error:
        return "not configured"
    kind = error.split(":", 1)[0].strip()
    return f"{kind} ({SEE_LOG})" if _TYPE_NAME.match(kind) and ":" in error else f"failed to load ({SEE_LOG})"


def safe_index(index: dict[str, Any]) -> dict[str, Any]:
    """The warm-up block with a failed build's detail replaced (it is the raw exception text)."""
    if index.get("state") == "failed" and index.get("detail") not in _SAFE_INDEX_DETAILS:
        return {**index, "detail": f"the index build failed ({SEE_LOG})"}
    return index


def public_readiness(report: dict[str, Any]) -> dict[str, Any]:
    """``ServiceState.readiness()`` with each failed component reduced to its name and a safe reason."""
    errors = report.get("load_errors") or {}
    return {
        **report,
        "index": safe_index(report.get("index") or {}),
        "load_errors": {part: safe_reason(text) for part, text in errors.items()},
    }
