"""SIGKILL PostgreSQL (radclip's database) in the middle of a stream of screens and ingests, then bring it back.

While it is down radclip stays up, /readyz names the database, screening still answers, and an ingest
is refused with a 503 problem (never a 500) that the client retries; after the database returns
(no radclip restart) every acknowledged ingest is in the index exactly once.
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
from fault_helpers import REPO, Service, png_bytes, write_corpus
from integration_servers import free_port


def _rows_per_study(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        got = conn.execute(
            "SELECT study_id, count(*) FROM index_items WHERE study_id LIKE 'pg-%' GROUP BY study_id"
        )
        return {str(s): int(n) for s, n in got.fetchall()}


class Postgres:
    """scripts/start_postgres.sh over one data directory and port, so it can be killed and started again."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/radclip"

    def start(self, timeout_s: float = 60) -> None:
        deadline, err = time.monotonic() + timeout_s, ""
        while time.monotonic() < deadline:  # after a SIGKILL the old backends need a moment to release memory
            proc = subprocess.run(["bash", str(REPO / "scripts/start_postgres.sh"), str(self.folder), str(self.port)],
                                  capture_output=True, text=True, timeout=120)  # fmt: skip
            if proc.returncode == 0:
                return
            err = proc.stderr[-800:]
            if "not installed" in err:
                pytest.skip(f"PostgreSQL could not be installed: {err}")
            time.sleep(0.5)
        raise AssertionError(f"PostgreSQL did not start again: {err}")

    def kill(self) -> None:
        pid = int((self.folder / "data" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        pg_ctl = Path("/usr/lib/postgresql/15/bin/pg_ctl")
        as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [*as_pg, str(pg_ctl), "-D", str(self.folder / "data"), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


def _round(client: httpx.Client, i: int, tally: Counter[str], acked: list[str], refused: list[str]) -> None:
    """A screen and an ingest; a 503 must be a problem with Retry-After (the client retries the ingest later)."""
    r = client.post("/api/v1/screen", content=png_bytes(9000 + i), headers={"Content-Type": "image/png"})
    tally[f"screen {r.status_code}"] += 1
    _check(r, 200)
    sid = f"pg-{i:04d}"
    r = client.post("/api/v1/studies", params={"study_id": sid}, content=png_bytes(60_000 + i),
                    headers={"Content-Type": "image/png"})  # fmt: skip
    tally[f"ingest {r.status_code}"] += 1
    _check(r, 201)
    (acked if r.status_code == 201 else refused).append(sid)


def _check(r: httpx.Response, ok: int) -> None:
    if r.status_code != ok:
        assert r.status_code == 503, (r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json" and r.headers["retry-after"].isdigit()


def test_postgres_killed_mid_stream_degrades_then_recovers_without_restart(
    tiny_models: Any, tmp_path: Path
) -> None:
    import tempfile

    pg = Postgres(Path(tempfile.mkdtemp(prefix="radclip_pg_fault_")), free_port())
    pg.start()
    svc = Service(tmp_path / "home", tiny_models, write_corpus(tmp_path / "corpus", 12), free_port(),
                  RADCLIP_DATABASE_URL=pg.url)  # fmt: skip
    tally: Counter[str] = Counter()
    acked: list[str] = []
    try:
        svc.start()
        assert svc.wait_index()["index"]["state"] == "ready"
        refused: list[str] = []
        with httpx.Client(base_url=svc.base, timeout=30) as client:
            for i in range(3):
                _round(client, i, tally, acked, refused)
            pg.kill()  # mid-stream
            time.sleep(0.5)
            for i in range(3, 6):
                _round(client, i, tally, acked, refused)
            down = svc.readyz()
            assert (down["status"], down["database"]["up"]) == ("degraded", False), down
            assert client.get("/healthz").status_code == 200
            pg.start()  # same data directory and port
            deadline = time.monotonic() + 60
            while not svc.readyz()["database"]["up"] and time.monotonic() < deadline:
                time.sleep(0.5)
            for i in range(6, 9):
                _round(client, i, tally, acked, refused)
            for sid in list(refused):  # the client retries what was refused with 503
                i = int(sid.split("-")[1])
                r = client.post("/api/v1/studies", params={"study_id": sid}, content=png_bytes(60_000 + i),
                                headers={"Content-Type": "image/png"})  # fmt: skip
                assert r.status_code == 201, r.text
                acked.append(sid)
            stored = {sid: client.get(f"/api/v1/studies/{sid}").status_code for sid in acked}
        rows = _rows_per_study(pg.url)
        print(f"postgres fault: {dict(sorted(tally.items()))}; ingests acknowledged {len(acked)} of 9, refused "
              f"with 503 then retried {len(refused)}; index rows per pg- study {sorted(set(rows.values()))}")  # fmt: skip
        assert sorted(acked) == [f"pg-{i:04d}" for i in range(9)] and set(stored.values()) == {200}
        assert rows == {sid: 1 for sid in acked}  # 0 lost, 0 duplicated
        assert tally["screen 503"] >= 1 and tally["screen 500"] == tally["ingest 500"] == 0
        assert tally["screen 200"] >= 6 and svc.readyz()["status"] == "ready"
        assert svc.proc is not None and svc.proc.poll() is None  # never restarted
    finally:
        svc.stop()
        pg.stop()
