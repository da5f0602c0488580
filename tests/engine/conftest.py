"""Real servers for the engine tests: PostgreSQL 15 and redis-server on loopback, in temp dirs.

Both are started once per session on free ports and stopped at the end. When a binary is
missing, ``scripts/ensure_apt.sh`` is tried once; the tests skip with the reason only if
the packages cannot be installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_fakes import HashingTextEmbedder, ProjectionImageEmbedder

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
_apt_tried: dict[str, str] = {}


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure(binary: str) -> str | None:
    """Path to ``binary`` or None; runs ensure_apt.sh once if it is missing."""
    found = shutil.which(binary) or (str(PG_BIN / binary) if (PG_BIN / binary).exists() else None)
    if found:
        return found
    if "rc" not in _apt_tried:
        proc = subprocess.run(["bash", str(REPO / "scripts" / "ensure_apt.sh")], capture_output=True, text=True)
        _apt_tried["rc"] = f"rc={proc.returncode}: {proc.stderr.strip()[-300:]}"
    return shutil.which(binary) or (str(PG_BIN / binary) if (PG_BIN / binary).exists() else None)


class RedisServer:
    """A redis-server we can kill and restart on the same port (for outage tests)."""

    def __init__(self, port: int | None = None) -> None:
        binary = _ensure("redis-server")
        if binary is None:
            pytest.skip(f"redis-server not installed and could not be installed ({_apt_tried.get('rc')})")
        self.binary, self.port, self.proc = binary, port or free_port(), None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture()
def redis_url(redis_server: RedisServer) -> str:
    import redis

    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture()
def own_redis() -> Iterator[RedisServer]:
    """A private redis-server the test may kill and restart."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Base URL (no database) of a throwaway PostgreSQL cluster."""
    initdb = _ensure("initdb")
    if initdb is None or os.geteuid() != 0 and shutil.which("runuser") is None:
        pytest.skip(f"PostgreSQL not installed and could not be installed ({_apt_tried.get('rc')})")
    pg_bin = Path(initdb).resolve().parent
    tmp = Path(tempfile.mkdtemp(prefix="radclip_pg_"))
    data, sock = tmp / "data", tmp / "sock"
    sock.mkdir()
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_pg:
        shutil.chown(tmp, "postgres"), shutil.chown(sock, "postgres")
    port = free_port()
    subprocess.run([*as_pg, str(pg_bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True)  # fmt: skip
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    subprocess.run([*as_pg, str(pg_bin / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(tmp / "log"), "-w", "start"],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_pg, str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture()
def pg_url(postgres_server: str) -> str:
    """A fresh, empty database per test."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_server}/{name}"


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'radclip.db'}"


@pytest.fixture()
def text_embedder() -> HashingTextEmbedder:
    return HashingTextEmbedder()


@pytest.fixture()
def image_embedder() -> ProjectionImageEmbedder:
    return ProjectionImageEmbedder()
