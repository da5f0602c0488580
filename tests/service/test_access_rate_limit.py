"""Per-key token buckets: 429 with Retry-After in-process and through a real Redis shared by two limiters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.service.access_helpers import access_client, store


def test_bucket_refills_at_its_rate() -> None:
    from radclip.service.rate_limit import RateLimiter

    limiter = RateLimiter({"reader": (3, 60), "admin": (0, 1)})
    assert [limiter.take("a", "reader", now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", "reader", now=100.0) == pytest.approx(20.0)  # 3 per 60 s: one token every 20 s
    assert limiter.take("b", "reader", now=100.0) == 0.0  # per key
    assert limiter.take("a", "reader", now=110.0) == pytest.approx(10.0)
    assert limiter.take("a", "reader", now=120.0) == 0.0
    assert all(limiter.take("x", "admin", now=100.0) == 0.0 for _ in range(50))  # 0 = unlimited


def test_over_the_limit_gives_429_with_retry_after(tmp_path: Path) -> None:
    with access_client(tmp_path, rate_limits="reader=3/60,admin=0/1") as c:
        key = {"X-API-Key": store(c).create("ward", "reader")}
        assert [c.get("/api/v1/whoami", headers=key).status_code for _ in range(3)] == [200, 200, 200]
        r = c.get("/api/v1/whoami", headers=key)
        assert (
            r.status_code == 429
            and r.headers["Retry-After"] == "20"
            and r.headers["content-type"] == "application/problem+json"
        )
        assert "ward" in r.json()["detail"] and "RADCLIP_RATE_LIMITS" in r.json()["fix"]


def test_settings_reject_a_malformed_limit(tmp_path: Path) -> None:
    from tests.service.access_helpers import make_settings

    from radclip.settings import SettingsError

    with pytest.raises(SettingsError, match="RADCLIP_RATE_LIMITS.*role=REQUESTS/SECONDS"):
        make_settings(tmp_path, rate_limits="reader=lots")


@pytest.fixture()
def redis_url() -> Iterator[str]:
    """A throwaway redis-server on loopback (as scripts/start_redis.sh starts it), killed after the test."""
    import shutil
    import socket
    import subprocess
    import time

    from radclip.service.background import free_port

    binary = shutil.which("redis-server")
    if binary is None:
        subprocess.run(["bash", "scripts/ensure_apt.sh"], capture_output=True, check=False)
        binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/ensure_apt.sh could not install it)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_redis_buckets_are_shared_across_workers(redis_url: str, tmp_path: Path) -> None:
    from radclip.service.rate_limit import RateLimiter

    one, two = RateLimiter({"reader": (4, 60)}, redis_url), RateLimiter({"reader": (4, 60)}, redis_url)
    waits = [lim.take("ward", "reader", now=1000.0) for lim in (one, two, one, two, one)]
    assert waits[:4] == [0.0] * 4 and waits[4] == pytest.approx(15.0, abs=0.002)
    assert two.take("ward", "reader", now=1015.0) == 0.0
    with access_client(tmp_path, rate_limits="reader=2/60", redis_url=redis_url) as c:
        key = {"X-API-Key": store(c).create("desk", "reader")}
        statuses = [c.get("/api/v1/whoami", headers=key).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        import redis

        assert redis.Redis.from_url(redis_url).exists("radclip:rl:desk") == 1
