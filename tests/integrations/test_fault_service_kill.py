"""SIGKILL radclip itself during an index build and during a stream of ingests; after a restart the
persisted index passes its checksums and every study acknowledged before the kill is there exactly once."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
from fault_helpers import Service, png_bytes, write_corpus
from integration_servers import free_port

CORPUS_SIZE = 300  # big enough that the start-up build is still running when it is killed


def _checksums_pass(home: Path) -> int:
    """Verify every persisted index against its manifest (size and sha256); returns how many were checked."""
    from radclip.engine.index import sha256_file

    manifests = sorted((home / "index").glob("*.manifest.json"))
    for man in manifests:
        doc = json.loads(man.read_text())
        data = man.with_name(doc["file"])
        assert data.stat().st_size == doc["bytes"] and sha256_file(data) == doc["sha256"], man.name
    return len(manifests)


def _rows_per_study(home: Path) -> dict[str, int]:
    with sqlite3.connect(home / "radclip.db") as con:
        return dict(con.execute("SELECT study_id, count(*) FROM index_items GROUP BY study_id").fetchall())


def _ingest_until_killed(svc: Service, acked: list[str], stop: threading.Event) -> None:
    with httpx.Client(base_url=svc.base, timeout=30) as client:
        for i in range(10_000):
            if stop.is_set():
                return
            sid = f"ingest-{i:04d}"
            try:
                r = client.post("/api/v1/studies", params={"study_id": sid}, content=png_bytes(50_000 + i),
                                headers={"Content-Type": "image/png"})  # fmt: skip
            except httpx.TransportError:
                return  # the service was killed while this one was in flight: not acknowledged
            assert r.status_code == 201 and r.json()["added"], r.text
            acked.append(sid)


def test_sigkill_during_index_build_and_ingest_loses_and_duplicates_nothing(
    tiny_models: Any, tmp_path: Path
) -> None:
    corpus = write_corpus(tmp_path / "corpus", CORPUS_SIZE)
    home = tmp_path / "home"
    svc = Service(home, tiny_models, corpus, free_port())
    try:
        # 1. Killed while the start-up build embeds the corpus.
        svc.start()
        caught = svc.readyz()["index"]
        for _ in range(300):  # up to ~30 s: kill once the build has embedded some of the corpus, not before
            if caught["state"] != "warming" or caught["done"] > 0:
                break
            threading.Event().wait(0.1)
            caught = svc.readyz()["index"]
        svc.kill()
        print(f"killed during the index build at {caught['state']} {caught['done']}/{caught['total']}")
        svc.start()
        assert svc.wait_index()["index"]["state"] == "ready"
        assert _rows_per_study(home) == {p.stem: 1 for p in corpus.glob("*.png")}  # each case once
        assert _checksums_pass(home) >= 1

        # 2. Killed in the middle of a stream of ingests.
        acked: list[str] = []
        stop = threading.Event()
        writer = threading.Thread(target=_ingest_until_killed, args=(svc, acked, stop))
        writer.start()
        while len(acked) < 6 and writer.is_alive():
            threading.Event().wait(0.05)
        svc.kill()
        stop.set()
        writer.join(timeout=60)
        before_kill = list(acked)
        svc.start()
        assert svc.wait_index()["index"]["state"] == "ready"
        checked = _checksums_pass(home)
        rows = _rows_per_study(home)
        ingested = {s: n for s, n in rows.items() if s.startswith("ingest-")}
        lost = [s for s in before_kill if s not in ingested]
        duplicated = [s for s, n in rows.items() if n != 1]
        print(f"acknowledged before the kill: {len(before_kill)}; present after restart: {len(ingested)} "
              f"(in flight at the kill: {len(ingested) - len(before_kill)}); lost: {len(lost)}; duplicated: "
              f"{len(duplicated)}; corpus rows: {len(rows) - len(ingested)}; manifests verified: {checked}")  # fmt: skip
        assert (lost, duplicated, len(rows) - len(ingested)) == ([], [], CORPUS_SIZE)
        assert len(ingested) - len(before_kill) in (0, 1)  # at most the one in flight, never half of one
        # Each acknowledged study is served, and re-sending one is "already indexed", not a second copy.
        with httpx.Client(base_url=svc.base, timeout=30) as client:
            assert all(client.get(f"/api/v1/studies/{s}").status_code == 200 for s in before_kill)
            again = client.post("/api/v1/studies", params={"study_id": before_kill[0]}, content=png_bytes(50_000),
                                headers={"Content-Type": "image/png"})  # fmt: skip
            assert again.status_code == 201 and not again.json()["added"]
        assert _rows_per_study(home)[before_kill[0]] == 1
    finally:
        svc.stop()
