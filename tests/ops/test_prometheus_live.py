"""A real Prometheus scrapes a real radclip and evaluates the project's rules: the drift alert on real shifts.

In-distribution NIH test images keep ``RadclipEmbeddingDrift`` inactive; Kermany pediatric test
images then take it pending -> firing. The rules are the shipped file with one change: the drift
rule's ``for:`` is shortened from 30m to 3s (scrape and evaluation every 1 s) so the test runs in
about a minute. Models: the shipped triage and image-text weights with the shipped drift reference.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from tests.ops.ops_helpers import SHIPPED

from radclip.lifecycle.drift_monitor import DRIFT_WINDOW

ROOT = Path(__file__).resolve().parents[2]
CXR = ROOT / ".." / "shared" / "data" / "cxr"
RULES = ROOT / "deploy" / "prometheus" / "radclip-rules.yml"
ALERT = "RadclipEmbeddingDrift"
TEST_FOR = "3s"  # the shipped rule waits 30m; the behaviour under test (pending, then firing) is the same


def _prometheus() -> str:
    if shutil.which("prometheus") is None:
        done = subprocess.run(
            [str(ROOT / "scripts" / "ensure_apt.sh"), "prometheus"], capture_output=True, text=True
        )
        if done.returncode != 0 or shutil.which("prometheus") is None:
            pytest.skip(
                f"the prometheus server is not installed and could not be: {done.stderr.strip()[-200:]}"
            )
    return str(shutil.which("prometheus"))


def _images(source: str, n: int) -> list[Path]:
    with (CXR / "manifest.csv").open(newline="") as f:
        paths = [r["path"] for r in csv.DictReader(f) if r["source"] == source and r["split"] == "test"]
    pick = np.random.default_rng(7).choice(len(paths), n, replace=False)
    return [CXR / paths[i] for i in sorted(pick)]


@pytest.fixture(scope="module")
def radclip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from radclip.engine import db
    from radclip.engine.keys import KeyStore
    from radclip.service.app import create_app
    from radclip.service.background import BackgroundServer
    from radclip.settings import load_settings

    home = tmp_path_factory.mktemp("home")
    settings = load_settings(home=home, triage_model=SHIPPED, clip_model="radclip-medclip-mini", backend="pytorch",
                             index_on_start=False, corpus=home / "none")  # fmt: skip
    engine = db.make_engine(settings.resolved_database_url)
    db.migrate(engine)
    srv_key = KeyStore(engine).create(
        "prometheus", "admin"
    )  # /metrics is admin-only; Prometheus sends it as a bearer token
    engine.dispose()
    with BackgroundServer(create_app(settings)) as srv:
        srv.key = srv_key  # type: ignore[attr-defined]
        yield srv


@pytest.fixture(scope="module")
def prometheus(radclip: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from radclip.service.background import free_port

    binary, tmp = _prometheus(), tmp_path_factory.mktemp("prometheus")
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == ALERT:
                rule["for"] = TEST_FOR
    (tmp / "rules.yml").write_text(yaml.safe_dump(rules))
    target = radclip.url.removeprefix("http://")
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": ["rules.yml"],
              "scrape_configs": [{"job_name": "radclip", "static_configs": [{"targets": [target]}],
                                  "authorization": {"credentials": radclip.key}}]}  # fmt: skip
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen([binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=subprocess.DEVNULL, stderr=(tmp / "prometheus.log").open("w"))  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _get(f"{url}/-/ready") is not None, 30, "prometheus did not become ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _get(url: str, **params: str) -> Any:
    try:
        r = httpx.get(url, params=params, timeout=5)
    except httpx.HTTPError:
        return None
    return (
        r.json()
        if r.status_code == 200 and "json" in r.headers.get("content-type", "")
        else r.status_code == 200 or None
    )


def _wait(ok: Any, seconds: float, message: str) -> None:
    deadline = time.monotonic() + seconds
    while not ok():
        assert time.monotonic() < deadline, message
        time.sleep(0.2)


def _drift_alert_states(prom: str) -> list[str]:
    alerts = _get(f"{prom}/api/v1/alerts")["data"]["alerts"]
    return [a["state"] for a in alerts if a["labels"]["alertname"] == ALERT]


def _scraped_drift(prom: str) -> float | None:
    result = _get(f"{prom}/api/v1/query", query="radclip_embedding_drift_cosine")["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def _post(radclip: Any, images: list[Path]) -> None:
    for path in images:
        kind = "image/jpeg" if path.suffix == ".jpeg" else "image/png"
        r = httpx.post(f"{radclip.url}/api/v1/screen", content=path.read_bytes(), timeout=120,
                       headers={"Content-Type": kind, "Authorization": f"Bearer {radclip.key}"})  # fmt: skip
        assert r.status_code == 200, r.text


@pytest.mark.skipif(not (CXR / "manifest.csv").is_file(), reason="../shared/data (v2) is not present")
def test_drift_alert_quiet_on_nih_then_pending_and_firing_on_pediatric(radclip: Any, prometheus: str) -> None:
    ready = httpx.get(f"{radclip.url}/readyz").json()["drift"]
    assert ready["state"] == "filling", (
        f"drift is not monitored ({ready}); run `radclip monitor drift-reference`"
    )
    _post(radclip, _images("nih", DRIFT_WINDOW))
    _wait(
        lambda: _scraped_drift(prometheus) is not None,
        20,
        "Prometheus never scraped radclip_embedding_drift_cosine",
    )
    time.sleep(5)  # longer than the rule's for: + an evaluation: a breach would be firing by now
    in_dist = _scraped_drift(prometheus)
    assert in_dist is not None and in_dist < 0.10, in_dist
    assert _drift_alert_states(prometheus) == [], "the drift alert fired on in-distribution NIH images"

    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:  # record each state change while the pediatric images stream in
        while not stop.is_set():
            states = _drift_alert_states(prometheus)
            if states and (not seen or seen[-1] != states[0]):
                seen.append(states[0])
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        _post(radclip, _images("kermany", DRIFT_WINDOW))
        _wait(
            lambda: "firing" in seen,
            30,
            f"the drift alert did not fire on pediatric images; states seen {seen}",
        )
    finally:
        stop.set()
        watcher.join(timeout=5)
    assert seen[:2] == ["pending", "firing"], seen
    shifted = _scraped_drift(prometheus)
    assert shifted is not None and shifted > 0.10
    print(f"drift cosine: NIH window {in_dist:.4f}, Kermany window {shifted:.4f}; alert states {seen}")
