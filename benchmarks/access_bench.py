"""Benchmark what access control costs a request: open local run vs a stored key, plain vs audited route.

Bounded: 200 requests per case on loopback against ``radclip serve`` started as its own process with
no models (the routes measured need none): ``GET /api/v1/whoami`` (authenticated, not audited) and
``POST /api/v1/pixels`` with a 64x64 PNG (audited: one hash-chained SQLite append per request).

    .venv/bin/python benchmarks/access_bench.py

Writes benchmarks/results/access_bench.json and prints a table.
"""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from timing import median_ms  # benchmarks/timing.py

REPO = Path(__file__).resolve().parents[1]
OUT = Path(__file__).with_name("results") / "access_bench.json"
REPEATS = 200


def _serve(home: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "radclip.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("radclip serve did not start")


def _case(port: int, headers: dict[str, str], png: bytes) -> dict[str, float]:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as c:
        plain = median_ms(lambda: c.get("/api/v1/whoami").raise_for_status(), REPEATS)
        audited = median_ms(
            lambda: c.post(
                "/api/v1/pixels", content=png, headers={"Content-Type": "image/png"}
            ).raise_for_status(),
            REPEATS,
        )
    return {"whoami_p50_ms": round(plain, 3), "pixels_audited_p50_ms": round(audited, 3)}


def _append_ms(journal: str) -> float:
    """One hash-chained append to a SQLite trail on a temp folder, in-process, with the given journal mode."""
    from radclip.engine import db
    from radclip.engine.audit import AuditEntry, AuditTrail, utc_stamp

    with tempfile.TemporaryDirectory() as tmp:
        engine = db.make_engine(f"sqlite:///{tmp}/a.db")
        db.migrate(engine)
        with engine.connect() as conn:
            conn.exec_driver_sql(f"PRAGMA journal_mode={journal}")
        trail = AuditTrail(engine)
        ms = median_ms(
            lambda: trail.append(
                AuditEntry(utc_stamp(), "bench", "reader", "127.0.0.1", "screen", None, 200)
            ),
            REPEATS,
        )
        engine.dispose()
    return ms


def main() -> None:
    sys.path.insert(0, str(REPO / "src"))
    from radclip.service.background import free_port

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64)).astype(np.uint8), mode="L").save(
        buf, format="PNG"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "RADCLIP_HOME": str(home), "RADCLIP_INDEX_ON_START": "0",
               "RADCLIP_TRIAGE_MODEL": str(home / "none"), "RADCLIP_CLIP_MODEL": str(home / "none"),
               "RADCLIP_SEED_CONDITIONS": "0", "RADCLIP_LOG_LEVEL": "ERROR", "RADCLIP_RATE_LIMITS": "reader=100000/1"}  # fmt: skip
        for name in ("open", "stored-key"):
            headers = {}
            if name == "stored-key":
                key = subprocess.run([sys.executable, "-m", "radclip.cli", "keys", "create", "--name", "bench", "--role", "reader"],
                                     env=env, capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
                headers = {"X-API-Key": key}
            port = free_port()
            proc = _serve(home, port, env)
            try:
                results[name] = _case(port, headers, buf.getvalue())
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    results["audit_append_p50_ms"] = {j: round(_append_ms(j), 3) for j in ("delete", "wal")}
    out = {
        "repeats": REPEATS,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "database": "SQLite (default)",
        "results": results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{'case':12} {'whoami p50 ms':>14} {'pixels (audited) p50 ms':>24}")
    for name, r in results.items():
        if "whoami_p50_ms" not in r:
            print(f"{name}: {r}")
            continue
        print(f"{name:12} {r['whoami_p50_ms']:14.2f} {r['pixels_audited_p50_ms']:24.2f}")


if __name__ == "__main__":
    main()
