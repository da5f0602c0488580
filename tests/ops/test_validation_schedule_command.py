"""``radclip monitor validate-schedule``: exit codes before any model pass, its /metrics port, /readyz drift, restarts."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from tests.ops.validation_helpers import FakeClock, config, failing, history, passing, scripted

from radclip.lifecycle.validation_schedule import HOUR, ValidationScheduler


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(tmp_path: Path, *extra: str) -> int:
    from radclip.cli import main

    return main(["monitor", "validate-schedule", "--once", "--manifest", str(tmp_path / "manifest.csv"), "--history", str(tmp_path / "history.jsonl"),
                 "--review-dir", str(tmp_path / "review"), "--metrics-port", "0", *extra])  # fmt: skip


def test_command_exit_codes_without_a_model_pass(tmp_path: Path) -> None:
    from radclip.io.manifest import data_snapshot

    (tmp_path / "manifest.csv").write_text("image_id,path,split\na,a.png,val\n")
    assert _cli(tmp_path, "--baseline", str(tmp_path / "missing.json")) == 2  # bad baseline
    (tmp_path / "bad.json").write_text(json.dumps({"gate": {"nothing": 1}}))
    assert _cli(tmp_path, "--baseline", str(tmp_path / "bad.json")) == 2
    other = {
        "gate_version": 2,
        "split": "val",
        "data_snapshot": "sha256:other",
        "triage_auc": {},
        "zeroshot_auc": {},
    }
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert _cli(tmp_path, "--baseline", str(tmp_path / "other.json")) == 3  # other data
    same_data_other_split = {
        **other,
        "data_snapshot": data_snapshot(tmp_path / "manifest.csv"),
        "split": "train",
    }
    (tmp_path / "split.json").write_text(json.dumps(same_data_other_split))
    assert _cli(tmp_path, "--baseline", str(tmp_path / "split.json")) == 3
    assert (
        _cli(tmp_path, "--baseline", str(tmp_path / "other.json"), "--split", "test") == 2
    )  # refused before anything runs
    assert (
        _cli(tmp_path, "--baseline", str(tmp_path / "other.json"), "--write-baseline") == 2
    )  # exists: needs --force
    codes = [h["exit_code"] for h in history(tmp_path)]
    assert codes == [2, 2, 3, 3]  # the two refusals never ran the schedule
    assert not (tmp_path / "review").exists()


def test_command_serves_metrics_on_its_own_loopback_port(tmp_path: Path) -> None:
    from radclip.cli import main

    port = _free_port()
    assert main(["monitor", "validate-schedule", "--once", "--baseline", str(tmp_path / "missing.json"), "--history", str(tmp_path / "h.jsonl"),
                 "--review-dir", str(tmp_path / "r"), "--metrics-port", str(port), "--interval-hours", "12", "--drift-interval-hours", "2"]) == 2  # fmt: skip
    body = (
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    )  # the server thread outlives run()
    values = {
        s.name: s.value
        for fam in text_string_to_metric_families(body)
        for s in fam.samples
        if s.name.startswith("radclip_validate")
    }
    assert values["radclip_validate_exit_code"] == 2 and values["radclip_validate_passed"] == 0
    assert (
        values["radclip_validate_interval_seconds"] == 12 * HOUR
    )  # a bad baseline compares nothing: no drift, normal interval


def test_read_service_drift_from_readyz_and_unreachable() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from radclip.engine.drift_reference import DriftReference
    from radclip.lifecycle.drift_monitor import DriftMonitor
    from radclip.lifecycle.validation_schedule import read_service_drift

    # The service's own /readyz drift block: a 5-study window of embeddings orthogonal to the reference mean.
    ref = DriftReference(
        mean=np.eye(8)[0], n=10, model_sha256="x", data_snapshot="sha256:x", sources="nih:10"
    )
    shifted, filling = DriftMonitor("clip", ref, window=5), DriftMonitor("clip", ref, window=5)
    shifted.observe(np.tile(np.eye(8)[1], (5, 1)))
    filling.observe(np.eye(8)[1])
    bodies: dict[str, dict] = {"/readyz": {"status": "ready", "drift": shifted.status()}}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = json.dumps(bodies.get(self.path, {})).encode()
            self.send_response(200 if self.path in bodies else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_port}"
        got = read_service_drift(url + "/")
        assert (got.state, got.cosine_distance, got.alert_above, got.drifting) == ("active", 1.0, 0.1, True)
        bodies["/readyz"] = {"status": "ready", "drift": filling.status()}
        assert read_service_drift(url).to_dict() == {
            "state": "filling",
            "cosine_distance": None,
            "alert_above": 0.1,
            "drifting": False,
        }
        bodies["/readyz"] = {"status": "ready"}  # an older service without a drift block
        assert read_service_drift(url).state == "unreachable"
    finally:
        srv.shutdown()
        srv.server_close()
    assert read_service_drift(f"http://127.0.0.1:{_free_port()}", timeout_s=2).state == "unreachable"


def test_a_restart_keeps_the_concept_drift_state_and_the_stale_clock(tmp_path: Path) -> None:
    from radclip.lifecycle.validation_schedule import resume_state

    assert resume_state(tmp_path / "history.jsonl") == (False, None)
    clock = FakeClock()
    ValidationScheduler(
        config(tmp_path, 2),
        gate=scripted(passing, failing),
        clock=clock,
        sleep=clock.sleep,
        echo=lambda s: None,
    ).run()
    failed_at = clock.t
    with (tmp_path / "history.jsonl").open("a") as fh:
        fh.write(
            json.dumps({"exit_code": 3, "timestamp": clock.t + 50}) + "\n" + '{"exit_code": 0, "times'
        )  # a line cut short
    assert resume_state(tmp_path / "history.jsonl") == (True, failed_at)  # the last run that compared failed

    # the command resumes: a restart whose first run compares nothing (bad baseline) keeps the 4 h interval
    (tmp_path / "manifest.csv").write_text("image_id,path,split\na,a.png,val\n")
    port = _free_port()
    assert _cli(tmp_path, "--baseline", str(tmp_path / "missing.json"), "--metrics-port", str(port)) == 2
    last = json.loads((tmp_path / "history.jsonl").read_text().splitlines()[-1])
    assert last["exit_code"] == 2 and last["drift"]["concept"] is True and last["next_interval_s"] == 4 * HOUR
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {s.name: s.value for fam in text_string_to_metric_families(body) for s in fam.samples}
    assert values["radclip_validate_last_compared_timestamp_seconds"] == failed_at  # not the restart time
