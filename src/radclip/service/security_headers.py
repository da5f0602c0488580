"""Browser hardening on every response (CSP, nosniff, referrer, framing) and refusal of cross-site writes.

The UI is same-origin static modules with no inline script or style, so the policy needs no
``unsafe-inline``. Cross-site writes are refused by ``Sec-Fetch-Site`` / ``Origin`` (CSRF): a web page
in the hospital browser must not be able to post studies to an open local run. Callers that send
neither header (curl, the PACS bridge, scripts) are not browsers and pass.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from radclip.service.problems import PROBLEM_BASE, PROBLEM_JSON

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")  # fmt: skip
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def _header(scope: Scope, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == name), None)


def cross_site_write(scope: Scope, allowed_origins: frozenset[str]) -> str | None:
    """Why this request is a cross-site write, or None when it is not one."""
    if scope.get("method") not in UNSAFE:
        return None
    origin = _header(scope, b"origin")
    if origin is not None and origin in allowed_origins:
        return None
    site = _header(scope, b"sec-fetch-site")
    if site in ("cross-site", "same-site"):
        return f"Sec-Fetch-Site is {site!r}"
    if origin is not None and origin != "null":
        host = _header(scope, b"host") or ""
        if origin.split("://", 1)[-1] != host:
            return f"Origin {origin!r} is not this service ({host!r})"
    elif origin == "null":
        return "Origin is 'null' (a sandboxed or file: page)"
    return None


class SecurityHeaders:
    def __init__(self, app: ASGIApp, allowed_origins: frozenset[str] = frozenset()) -> None:
        self.app, self.allowed_origins = app, allowed_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        why = cross_site_write(scope, self.allowed_origins)
        if why is not None:
            body = json.dumps({"type": PROBLEM_BASE + "cross-site-write", "title": "Cross-site request refused", "status": 403,
                               "detail": f"a write from another site was refused: {why}",
                               "fix": "call the API from the radclip page itself, or list your origin in RADCLIP_CORS_ORIGINS"}).encode()  # fmt: skip
            await send_with_headers({"type": "http.response.start", "status": 403,
                                     "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_with_headers)
