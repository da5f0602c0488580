"""The key and role are checked before the request body is read: a refused caller's body is never pulled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.service.access_helpers import access_client

BODY = json.dumps({"name": "pneumothorax-x", "prompts": ["a chest x-ray with a pneumothorax"]}).encode()


def _asgi_post(client: Any, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any], int]:
    """POST ``BODY`` straight to the ASGI app; return (status, JSON answer, body messages the app pulled)."""
    pulled, sent = [0], []

    async def receive() -> dict[str, Any]:
        pulled[0] += 1
        if pulled[0] == 1:
            return {"type": "http.request", "body": BODY, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": raw,
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}  # fmt: skip

    async def call() -> None:
        await client.app(scope, receive, send)

    client.portal.call(call)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body), pulled[0]


def test_a_refused_key_or_role_never_reads_the_json_body(tmp_path: Path) -> None:
    with access_client(tmp_path, api_key="boot-strap-key-1") as c:
        reader = c.app.state.radclip_access.keys.create("r", "reader")
        for headers, status, kind in [
            ({}, 401, "unauthorized"),
            ({"X-API-Key": "rck_0000000000000000_nope"}, 401, "unauthorized"),
            ({"X-API-Key": reader}, 403, "forbidden"),
        ]:
            got, problem, pulled = _asgi_post(c, "/api/v1/register-condition", headers)
            assert (got, problem["status"], problem["type"].rsplit("/", 1)[-1]) == (status, status, kind)
            assert problem["fix"] and pulled == 0, (headers, pulled)
        # The same request with an admin key is read (and answered by the route, not by the gate).
        got, _, pulled = _asgi_post(c, "/api/v1/register-condition", {"X-API-Key": "boot-strap-key-1"})
        assert pulled >= 1 and got not in (401, 403)
        # A reader may call /retrieve: its JSON body is read and the route answers.
        got, _, pulled = _asgi_post(c, "/api/v1/retrieve", {"X-API-Key": reader})
        assert pulled >= 1 and got not in (401, 403)
