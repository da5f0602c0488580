"""Which role each HTTP operation needs, and which of them touch patient-linked data (the audit action).

One table, read by the auth dependency, the audit middleware and the OpenAPI annotations, so the
documented role is the enforced role. An operation missing from the table needs ``admin`` (fail
closed) and is not audited; tests list every route so a new one is classified on purpose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PUBLIC = "public"
AUTHENTICATED = "authenticated"  # any valid key, whatever its role
READER, INGEST, ADMIN = "reader", "ingest", "admin"
DEFAULT_ROLE = ADMIN


@dataclass(frozen=True)
class Rule:
    role: str
    action: str | None = None  # audit action when the operation reads or writes patient-linked data


# (method, route template) -> rule. Templates are FastAPI's route.path.
RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/healthz"): Rule(PUBLIC),
    ("GET", "/readyz"): Rule(PUBLIC),
    ("GET", "/"): Rule(PUBLIC),
    ("GET", "/ui/{asset:path}"): Rule(PUBLIC),
    ("GET", "/docs"): Rule(PUBLIC),
    ("GET", "/metrics"): Rule(ADMIN),
    ("GET", "/api/v1/whoami"): Rule(AUTHENTICATED),
    ("POST", "/api/v1/triage"): Rule(READER, "triage"),
    ("POST", "/api/v1/explain"): Rule(READER, "explain"),
    ("POST", "/api/v1/screen"): Rule(READER, "screen"),
    ("POST", "/api/v1/retrieve"): Rule(READER, "retrieve"),
    ("POST", "/api/v1/similar"): Rule(READER, "similar"),
    ("POST", "/api/v1/pixels"): Rule(READER, "view-pixels"),
    ("POST", "/api/v1/cam"): Rule(READER, "explain-cam"),
    ("GET", "/api/v1/studies"): Rule(READER, "list-studies"),
    ("GET", "/api/v1/studies/{study_id}"): Rule(READER, "view-study"),
    ("GET", "/api/v1/studies/{study_id:path}/file"): Rule(READER, "view-study-file"),
    ("GET", "/api/v1/studies/{study_id:path}/thumbnail"): Rule(READER, "view-study-thumbnail"),
    ("POST", "/api/v1/studies"): Rule(INGEST, "ingest"),
    ("GET", "/api/v1/conditions"): Rule(READER),
    ("GET", "/api/v1/conditions/{name}/history"): Rule(READER),
    ("POST", "/api/v1/register-condition"): Rule(ADMIN),
    ("DELETE", "/api/v1/conditions/{name}"): Rule(ADMIN),
    ("POST", "/api/v1/feedback"): Rule(READER, "feedback"),
    ("GET", "/api/v1/review/discordant"): Rule(READER, "review-discordant"),
    ("GET", "/api/v1/review/discordant/{study_id}/heatmap"): Rule(READER, "review-heatmap"),
    ("GET", "/api/v1/models"): Rule(ADMIN),
    ("GET", "/api/v1/models/history"): Rule(ADMIN),
    ("POST", "/api/v1/models"): Rule(ADMIN),
    ("POST", "/api/v1/models/{ref}/shadow"): Rule(ADMIN),
    ("POST", "/api/v1/models/{ref}/canary"): Rule(ADMIN),
    ("POST", "/api/v1/models/{ref}/promote"): Rule(ADMIN),
    ("POST", "/api/v1/models/{name}/rollback"): Rule(ADMIN),
}


def _plain(path: str) -> str:
    """``/studies/{study_id:path}/file`` -> ``/studies/{study_id}/file`` (the OpenAPI spelling)."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


_BY_PLAIN = {(m, _plain(p)): r for (m, p), r in RULES.items()}


def rule_for(method: str, path: str) -> Rule:
    """The rule of a route template, in FastAPI's (``{x:path}``) or OpenAPI's (``{x}``) spelling."""
    if method == "HEAD":  # Starlette answers HEAD with the GET route
        method = "GET"
    return _BY_PLAIN.get((method, _plain(path)), Rule(DEFAULT_ROLE))


def allows(principal_role: str, required: str) -> bool:
    """``admin`` may do everything; every other role exactly its own operations (and those any key may call)."""
    return required in (PUBLIC, AUTHENTICATED) or principal_role in (ADMIN, required)


def operations_for(role: str) -> list[str]:
    """``"METHOD path"`` of each operation ``role`` may call (the web UI hides the rest)."""
    return sorted(f"{m} {p}" for (m, p), r in RULES.items() if r.role != PUBLIC and allows(role, r.role))
