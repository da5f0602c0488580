"""ASGI middleware that appends an audit entry for every request to a patient-linked operation.

The entry is written when the response starts (its status is the outcome) and before any of the
body leaves; if the write fails, the client gets 503 instead of the data, so nothing is served
unaudited. Which operations are audited, and under which action name, is ``roles.RULES``.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from radclip.engine.audit import AuditEntry, utc_stamp
from radclip.service.auth import PRINCIPAL, client_address
from radclip.service.problems import PROBLEM_BASE, PROBLEM_JSON
from radclip.service.roles import rule_for

log = logging.getLogger(__name__)
ANONYMOUS = ("-", "none")  # key name and role of a request refused before it was authenticated


def _study(scope: Scope) -> str | None:
    """The study id the request names (path, else ``?study_id=``); pseudonymised before it is stored."""
    sid = (scope.get("path_params") or {}).get("study_id")
    if sid is None:
        sid = next(iter(parse_qs(scope.get("query_string", b"").decode("latin-1")).get("study_id", [])), None)
    return sid


def _unavailable() -> tuple[Message, Message]:
    body = json.dumps({"type": PROBLEM_BASE + "audit-unavailable", "title": "Audit trail unavailable", "status": 503,
                       "detail": "the access could not be recorded in the audit trail, so it was refused",
                       "fix": "retry; if it persists, an operator should check the database (see the server log)"}).encode()  # fmt: skip
    start = {"type": "http.response.start", "status": 503,
             "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
                         (b"retry-after", b"5")]}  # fmt: skip
    return start, {"type": "http.response.body", "body": body}


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def _entry(self, scope: Scope, access: Any, status: int) -> AuditEntry | None:
        route = scope.get("route")
        if route is None:
            return None
        action = rule_for(scope.get("method", "GET"), route.path).action
        if action is None:
            return None
        principal = scope.get(PRINCIPAL)
        name, role = (principal.name, principal.role) if principal is not None else ANONYMOUS
        sid = _study(scope)
        study = access.pseudonymiser.pseudonym(sid, kind="study") if sid else None
        return AuditEntry(
            utc_stamp(), name, role, client_address(scope, access.trusted_proxies)[:64], action, study, status
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope.get("app")
        access = getattr(getattr(app, "state", None), "radclip_access", None)
        if scope["type"] != "http" or access is None or access.audit is None:
            await self.app(scope, receive, send)
            return
        refused, started = [False], [False]

        async def audited_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
                if not await self._record(scope, access, int(message["status"])):
                    refused[0] = True
                    for m in _unavailable():
                        await send(m)
                    return
            elif refused[0]:
                return  # the body of a response we replaced with 503
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        except Exception:
            if not started[0]:
                await self._record(scope, access, 500)
            raise

    async def _record(self, scope: Scope, access: Any, status: int) -> bool:
        entry = self._entry(scope, access, status)
        if entry is None:
            return True
        try:
            await anyio.to_thread.run_sync(access.audit.append, entry)
            return True
        except Exception as exc:  # type name only: SQL errors carry parameters (study ids, paths)
            log.error(
                "audit write failed for %s: %s; request refused with 503", entry.action, type(exc).__name__
            )
            return False
