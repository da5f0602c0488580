"""The 60-second soak of make test: benchmarks/soak.py against a real ``radclip serve`` at 16 clients.

It checks outcomes only (0 errors, the server alive, every operation of the mix exercised, RSS and
open files sampled); latencies and the RSS slope are recorded in the JSON, not asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_sixty_second_soak_has_no_errors(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "soak.py"), "--duration-s", "60", "--clients", "16",
                           "--sample-s", "10", "--out", str(out)], env=env, capture_output=True, text=True, timeout=400)  # fmt: skip
    assert out.is_file(), proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    print(
        {k: result[k] for k in ("requests", "errors", "throughput_rps", "p50_ms", "p99_ms", "by_operation")}
    )
    assert (result["errors"], result["server_alive_at_end"], result["clients"]) == (0, True, 16), result[
        "error_examples"
    ]
    assert set(result["by_operation"]) == {
        "screen-png",
        "screen-dicom",
        "retrieve",
        "similar",
        "register",
        "ingest",
    }
    assert min(result["by_operation"].values()) >= 1
    assert len(result["samples"]) >= 5 and all(
        s["rss_mb"] > 0 and s["open_files"] > 0 for s in result["samples"]
    )
    assert proc.returncode == 0
