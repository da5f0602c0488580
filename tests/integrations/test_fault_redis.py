"""SIGKILL Redis (rate limits + text-embedding cache) in the middle of a request stream, then bring it back.

While it is down the service stays up, /readyz reports it, and screening and retrieval still answer;
every request of the stream is answered once (0 lost); the cache reconnects without a restart.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_helpers import Service, png_bytes, write_corpus
from integration_servers import free_port

KEY = "fault-test-bootstrap-key-0123456789"


def _redis(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        subprocess.run(["bash", "scripts/ensure_apt.sh"], capture_output=True, check=False)
        binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/ensure_apt.sh could not install it)")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    for _ in range(100):
        try:
            import redis

            if redis.Redis(port=port, socket_timeout=0.5).ping():
                return proc
        except Exception:  # not listening yet
            time.sleep(0.05)
    proc.kill()
    pytest.skip("redis-server did not answer within 5 s")


def _one_round(client: httpx.Client, i: int, tally: Counter[str]) -> None:
    """A screen (PNG) and a retrieve with a query text never seen before (a cache miss: it asks Redis)."""
    for method, url, kw in [
        (
            "POST",
            "/api/v1/screen",
            {"content": png_bytes(7000 + i), "headers": {"Content-Type": "image/png"}},
        ),
        ("POST", "/api/v1/retrieve", {"json": {"query": f"right pleural effusion case {i}", "top_k": 3}}),
    ]:
        tally["sent"] += 1
        r = client.request(method, url, **kw)
        tally["ok" if r.status_code == 200 else f"status {r.status_code}"] += 1


def test_redis_killed_mid_stream_degrades_then_recovers_without_restart(
    tiny_models: Any, tmp_path: Path
) -> None:
    port = free_port()
    server = _redis(port)
    svc = Service(tmp_path / "home", tiny_models, write_corpus(tmp_path / "corpus", 12), free_port(),
                  RADCLIP_REDIS_URL=f"redis://127.0.0.1:{port}/0", RADCLIP_API_KEY=KEY)  # fmt: skip
    tally: Counter[str] = Counter()
    try:
        svc.start()
        assert svc.wait_index()["index"]["state"] == "ready"
        with httpx.Client(base_url=svc.base, timeout=30, headers={"X-API-Key": KEY}) as client:
            for i in range(4):
                _one_round(client, i, tally)
            assert svc.readyz()["text_cache"]["redis_up"] is True
            os.kill(server.pid, signal.SIGKILL)  # in the middle of the stream
            server.wait(timeout=10)
            for i in range(4, 10):
                _one_round(client, i, tally)
            down = svc.readyz()
            assert down["text_cache"]["redis_up"] is False and down["text_cache"]["redis_errors"] >= 1
            assert client.get("/healthz").status_code == 200
            server = _redis(port)  # back at the same address
            deadline, i = time.monotonic() + 60, 10
            while not svc.readyz()["text_cache"]["redis_up"] and time.monotonic() < deadline:
                _one_round(client, i, tally)
                i += 1
                time.sleep(0.2)
            up = svc.readyz()["text_cache"]
            assert up["redis_up"] is True and up["redis_reconnects"] >= 1
            for j in range(i, i + 2):
                _one_round(client, j, tally)
        print(f"redis fault: {tally['sent']} requests sent, {tally['ok']} answered 200, "
              f"{tally['sent'] - tally['ok']} lost or failed; reconnects {up['redis_reconnects']}")  # fmt: skip
        assert dict(tally) == {"sent": tally["ok"], "ok": tally["ok"]}
        assert svc.proc is not None and svc.proc.poll() is None  # never restarted
    finally:
        svc.stop()
        server.kill()
