"""A small OAuth2 token endpoint + bearer-protected FHIR stub on loopback, for the authentication tests.

``POST /token``: the ``client_credentials`` grant. SMART Backend Services clients authenticate
with a ``private_key_jwt`` assertion that must be RS384, signed by the registered key (by
``kid``), with ``iss == sub == client_id``, ``aud`` = this endpoint, ``exp`` within 5 minutes
and an unused ``jti``; secret clients with ``client_secret_basic``. Anything else is refused
with ``invalid_client``. ``GET /fhir/R4/...``: 401 without a live issued token, else an empty
searchset Bundle.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class TokenServerState:
    client_id: str
    public_key: Any  # joserfc RSAKey
    kid: str
    secret: str = ""  # for client_secret_basic clients (same client id)
    static_tokens: set[str] = field(default_factory=set)
    expires_in: int = 120
    issued: dict[str, float] = field(default_factory=dict)  # token -> expiry
    seen_jti: set[str] = field(default_factory=set)
    granted: int = 0
    refused: list[str] = field(default_factory=list)  # the reasons
    assertion_headers: list[dict[str, Any]] = field(default_factory=list)
    assertion_claims: list[dict[str, Any]] = field(default_factory=list)
    fhir_ok: int = 0
    fhir_401: int = 0


def _check_assertion(state: TokenServerState, form: dict[str, str], audience: str) -> str | None:
    """None when the assertion is good, else why it is not."""
    from joserfc import jwt

    if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
        return "no client assertion"
    token = form["client_assertion"]
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    state.assertion_headers.append(header)
    if header.get("alg") != "RS384" or header.get("kid") != state.kid:
        return f"alg {header.get('alg')} / kid {header.get('kid')} not accepted"
    try:
        claims = jwt.decode(token, state.public_key, algorithms=["RS384"]).claims
    except Exception as exc:  # bad signature
        return f"signature: {type(exc).__name__}"
    state.assertion_claims.append(claims)
    now = time.time()
    if not (claims.get("iss") == claims.get("sub") == state.client_id and claims.get("aud") == audience):
        return "iss/sub/aud"
    if not (now < claims.get("exp", 0) <= now + 300 + 5):
        return "exp missing, past or more than 5 minutes ahead"
    if not claims.get("jti") or claims["jti"] in state.seen_jti:
        return "jti missing or replayed"
    state.seen_jti.add(claims["jti"])
    return None


def _check_basic(state: TokenServerState, header: str | None) -> str | None:
    if not header or not header.startswith("Basic ") or not state.secret:
        return "no client authentication"
    ident, _, secret = base64.b64decode(header[6:]).decode().partition(":")
    ok = urllib.parse.unquote(ident) == state.client_id and secrets.compare_digest(
        urllib.parse.unquote(secret), state.secret
    )
    return None if ok else "bad client secret"


def make_handler(state: TokenServerState, base: list[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
            form = dict(urllib.parse.parse_qsl(body))
            if self.path != "/token" or form.get("grant_type") != "client_credentials":
                return self._json(400, {"error": "unsupported_grant_type"})
            auth = self.headers.get("authorization")
            why = _check_basic(state, auth) if auth else _check_assertion(state, form, f"{base[0]}/token")
            if why:
                state.refused.append(why)
                return self._json(401, {"error": "invalid_client", "error_description": why})
            token = secrets.token_hex(16)
            state.issued[token] = time.time() + state.expires_in
            state.granted += 1
            self._json(
                200,
                {
                    "access_token": token,
                    "token_type": "bearer",
                    "expires_in": state.expires_in,
                    "scope": form.get("scope", ""),
                },
            )

        def do_GET(self) -> None:  # noqa: N802
            token = (self.headers.get("authorization") or "").removeprefix("Bearer ")
            live = token in state.static_tokens or state.issued.get(token, 0) > time.time()
            if not self.path.startswith("/fhir/R4") or not live:
                state.fhir_401 += 1
                return self._json(
                    401,
                    {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]},
                )
            state.fhir_ok += 1
            self._json(200, {"resourceType": "Bundle", "type": "searchset", "entry": []})

    return Handler


class TokenServer:
    """``TokenServer(state).start()``; ``.base`` is ``http://127.0.0.1:PORT``; ``.stop()``."""

    def __init__(self, state: TokenServerState) -> None:
        self.state = state
        self._base: list[str] = [""]
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state, self._base))
        self.base = self._base[0] = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> TokenServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
