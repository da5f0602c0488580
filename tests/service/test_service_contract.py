"""The OpenAPI document is the contract: schemathesis, every check and the stateful phase, finds 0 failures.

A real uvicorn server (tiny seeded models, a 12-image corpus) is started with a bootstrap key; the
test waits for the case index to finish warming, then runs the ``st`` CLI with ``--checks all`` over
the examples, coverage, fuzzing and stateful phases. Bounded by ``RADCLIP_CONTRACT_EXAMPLES`` (per
operation and phase; default keeps the test near a minute on 2 cores). The longer recorded run in
docs/reliability.md sets it higher and writes the JSON report to ``RADCLIP_CONTRACT_REPORT``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from radclip.service.background import BackgroundServer

KEY = "contract-test-bootstrap-key"
CONFIG = Path(__file__).with_name("schemathesis.toml")  # the one per-operation exception, and why
EXAMPLES = int(os.environ.get("RADCLIP_CONTRACT_EXAMPLES", "8"))
MAX_TIME_S = int(os.environ.get("RADCLIP_CONTRACT_MAX_TIME_S", "0"))  # 0: no time budget, examples only


@pytest.fixture(scope="module")
def keyed_server(tiny_triage_weights: Path, tiny_clip_weights: Path, tiny_corpus: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:  # fmt: skip
    from radclip.service.app import create_app
    from radclip.settings import load_settings

    settings = load_settings(
        home=tmp_path_factory.mktemp("contract-home"), triage_model=str(tiny_triage_weights),
        clip_model=str(tiny_clip_weights), corpus=tiny_corpus, max_upload_mb=2, api_key=KEY,
        rate_limits="admin=0/1",  # unlimited: the fuzzer is one client sending thousands of requests
    )  # fmt: skip
    with BackgroundServer(create_app(settings)) as server:
        deadline = time.monotonic() + 120
        while httpx.get(f"{server.url}/readyz").json()["index"]["state"] != "ready":
            assert time.monotonic() < deadline, "index did not become ready"
            time.sleep(0.1)
        yield server


def _st() -> str:
    found = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if found is None:
        pytest.skip("schemathesis CLI `st` not installed: pip install -e '.[dev]'")
    return found


def test_schemathesis_all_checks_stateful_finds_no_failures(keyed_server: Any, tmp_path: Path) -> None:
    report = Path(os.environ.get("RADCLIP_CONTRACT_REPORT", tmp_path / "st.json"))
    cmd = [
        _st(), "--config-file", str(CONFIG), "run", f"{keyed_server.url}/openapi.json", "--checks", "all",
        "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(EXAMPLES),
        "--header", f"X-API-Key: {KEY}", "--workers", "1", "--seed", "17", "--no-color",
        "--request-timeout", "120", "--suppress-health-check", "all", "--generation-database", "none",
        "--report", "json", "--report-json-path", str(report),
    ]  # fmt: skip
    if MAX_TIME_S:
        cmd += ["--max-time", str(MAX_TIME_S)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=max(900, 2 * MAX_TIME_S))
    report.with_suffix(".log").write_text(run.stdout + run.stderr)  # the full findings, next to the report
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-2000:]
