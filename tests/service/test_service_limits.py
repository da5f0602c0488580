"""Errors and body limits on a real uvicorn server with no models loaded (fast): 500s keep the
connection, every body is refused once it passes its limit, before anything parses it."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from radclip.service.background import BackgroundServer

JSON_BODY_LIMIT_BYTES = 256 * 1024  # radclip.service.uploads.JSON_BODY_LIMIT_BYTES (the documented limit)


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    from radclip.service.app import create_app
    from radclip.service.state import ServiceState
    from radclip.settings import load_settings

    settings = load_settings(home=tmp_path_factory.mktemp("home"), max_upload_mb=2, index_on_start=False)
    app = create_app(settings, state=ServiceState(settings=settings))

    def boom() -> None:
        raise RuntimeError("a bug in a route")

    app.add_api_route("/boom", boom, methods=["GET"])
    with BackgroundServer(app) as server:
        yield server


def _connection(server: BackgroundServer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)


def test_a_500_keeps_the_keep_alive_connection(bare_server: BackgroundServer, caplog: pytest.LogCaptureFixture) -> None:
    conn = _connection(bare_server)
    conn.connect()
    sock = conn.sock
    for _ in range(10):
        conn.request("GET", "/boom")
        r = conn.getresponse()
        body = json.loads(r.read())
        assert (r.status, r.getheader("content-type"), body["type"]) == (500, "application/problem+json",
                                                                         "https://radclip.dev/problems/internal")  # fmt: skip
        assert r.getheader("connection") != "close"
        conn.request("GET", "/healthz")
        ok = conn.getresponse()
        ok.read()
        assert ok.status == 200
        assert conn.sock is sock  # the same TCP connection: http.client would silently reconnect otherwise
    conn.close()
    ours = [r for r in caplog.records if r.getMessage() == "unhandled error: RuntimeError"]
    theirs = [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]
    assert (len(ours), len(theirs)) == (10, 0)  # each error logged once, by radclip


def _json_body(size: int) -> bytes:
    return json.dumps({"query": "x" * size, "top_k": 3}).encode()


@pytest.mark.parametrize("path", ["/api/v1/retrieve", "/api/v1/register-condition"])
def test_json_bodies_past_the_limit_are_refused_before_parsing(
    bare_server: BackgroundServer, path: str
) -> None:
    big = _json_body(2 * JSON_BODY_LIMIT_BYTES)
    conn = _connection(bare_server)
    conn.request("POST", path, body=big, headers={"content-type": "application/json"})
    r = conn.getresponse()
    body = json.loads(r.read())
    assert r.status == 413 and "larger than the limit of 262,144 bytes" in body["detail"], body
    conn.close()
    # chunked, with no Content-Length: counted while it streams
    conn = _connection(bare_server)
    chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))
    conn.request("POST", path, body=chunks, headers={"content-type": "application/json"}, encode_chunked=True)
    r = conn.getresponse()
    body = json.loads(r.read())
    assert r.status == 413 and body["title"] == "Request body too large", body
    conn.close()
    # a body within the limit still reaches the route (no registry / model here: 503 says so)
    conn = _connection(bare_server)
    conn.request("POST", path, body=_json_body(100), headers={"content-type": "application/json"})
    r = conn.getresponse()
    r.read()
    assert r.status in (422, 503)
    conn.close()
