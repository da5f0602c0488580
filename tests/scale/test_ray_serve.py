"""radclip on Ray Serve, on a real local Ray cluster the test starts (head + one worker node, loopback).

Two reader replicas and one writer answer through Serve's HTTP proxy; a single-process service with
the same settings and the same tiny seeded models answers beside it. /screen must match float for
float (only ``latency_ms`` differs), both readers must answer, and an ingest through the proxy must
reach every reader. Skips, saying why, only when Ray cannot be imported or the cluster cannot start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Request  # at module level: the annotations below are strings, resolved from these globals
from ray_cluster import LocalRayCluster, RayUnavailable, free_port

pytestmark = pytest.mark.slow
START_TIMEOUT_S = 60  # each Ray node, and the Serve deployment, must come up within this


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """``ray start --head`` + one ``ray start --address`` on loopback (tests/scale/ray_cluster.py); the GCS address."""
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        pytest.skip(f"Ray Serve is not importable ({exc}); pip install 'ray[serve]>=2.60'")
    src = str(Path(__import__("radclip").__file__).resolve().parents[1])  # replicas import this checkout's radclip
    pythonpath = os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])
    cluster = LocalRayCluster(workers=1, cpus_per_node=2, start_timeout_s=START_TIMEOUT_S,
                              env={"PYTHONPATH": pythonpath,  # one proxy (HeadOnly) for both nodes' replicas:
                                   "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0"})  # fmt: skip
    try:
        cluster.start()
        os.environ["PYTHONPATH"] = pythonpath
        ray.init(address=cluster.address, log_to_driver=False)
    except (RayUnavailable, ConnectionError, RuntimeError) as exc:
        cluster.stop()
        pytest.skip(f"Ray could not start: {exc}")
    try:
        yield cluster.address
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            cluster.stop()


def _png(seed: int, size: int = 64) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(seed).random((size, size)) * 255).astype("uint8"), mode="L").save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def services(ray_cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The single-process service and the Ray Serve deployment, on the same settings, home and models."""
    from radclip.models.tiny_artifacts import write_tiny_models
    from radclip.service.app import create_app
    from radclip.service.background import BackgroundServer
    from radclip.service.ray_deployment import RayServeConfig, deploy
    from radclip.settings import load_settings

    root = tmp_path_factory.mktemp("rayserve")
    triage, clip = write_tiny_models(root)
    corpus = root / "corpus"
    corpus.mkdir()
    for i in range(12):
        (corpus / f"case{i:02d}.png").write_bytes(_png(100 + i))
    overrides = {"home": str(root / "home"), "triage_model": str(triage), "clip_model": str(clip), "corpus": str(corpus),
                 "torch_threads": 1}  # fmt: skip
    with BackgroundServer(create_app(load_settings(**overrides))) as single:
        _wait_ready(single.url)
        config = RayServeConfig(replicas=2, num_cpus=0.5, proxy_location="HeadOnly", http_port=free_port(), health_check_period_s=2,
                                graceful_shutdown_timeout_s=5)  # fmt: skip
        summary = deploy(ray_cluster, overrides, config)
        _wait_ready(summary["url"])
        yield {"single": single.url, "ray": summary["url"], "summary": summary, "overrides": overrides}


def _wait_ready(url: str) -> dict[str, Any]:
    deadline, last = time.monotonic() + START_TIMEOUT_S, None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/readyz", timeout=10)
            last = r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text
            if r.status_code == 200 and last["status"] == "ready" and last["index"]["state"] == "ready":
                return last
        except (httpx.HTTPError, ValueError, TypeError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not ready within {START_TIMEOUT_S} s: {last}")


def _screen(url: str, png: bytes) -> httpx.Response:
    r = httpx.post(f"{url}/api/v1/screen?similar=3", content=png, headers={"content-type": "image/png"}, timeout=60)
    assert r.status_code == 200, r.text
    return r


def test_screen_through_two_replicas_matches_single_process(services: dict[str, Any]) -> None:
    from ray import serve

    replicas, compared = set(), 0
    for seed in range(16):
        png = _png(seed)
        via_ray, single = _screen(services["ray"], png), _screen(services["single"], png)
        a, b = via_ray.json(), single.json()
        assert a.pop("latency_ms") >= 0 and b.pop("latency_ms") >= 0
        assert a == b  # every float, every finding, the similar cases from the shared index snapshot
        compared += 1
        replicas.add(via_ray.headers["x-radclip-replica"])
        if len(replicas) >= 2 and compared >= 4:
            break
    assert len(replicas) == 2, f"only replica(s) {replicas} answered {compared} requests"
    app = serve.status().applications["radclip"]
    assert app.status == "RUNNING"
    readers = app.deployments["RadclipService"]
    assert readers.replica_states.get("RUNNING") == 2, readers.replica_states
    ready = httpx.get(f"{services['ray']}/readyz", timeout=10).json()
    assert ready["status"] == "ready" and ready["database"]["up"] and ready["index"]["state"] == "ready"


def test_ingest_has_one_writer_and_every_reader_converges(services: dict[str, Any]) -> None:
    png = _png(9_999)
    r = httpx.post(f"{services['ray']}/api/v1/studies?study_id=ray-ingest-1", content=png,
                   headers={"content-type": "image/png"}, timeout=60)  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["added"] is True
    writer = r.headers["x-radclip-replica"]
    seen: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while len(seen) < 2 and time.monotonic() < deadline:
        s = httpx.post(f"{services['ray']}/api/v1/similar?top_k=1", content=png, headers={"content-type": "image/png"}, timeout=60)
        assert s.status_code == 200, s.text
        replica = s.headers["x-radclip-replica"]
        assert replica != writer  # reads never go to the writer
        seen[replica] = s.json()["results"][0]["study_id"]
    assert len(seen) == 2, f"only reader(s) {sorted(seen)} answered"
    assert set(seen.values()) == {"ray-ingest-1"}, seen


def test_cli_redeploy_drains_in_flight_requests(services: dict[str, Any], ray_cluster: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """``radclip serve --ray ADDR --replicas 1`` (settings from RADCLIP_* only) while 4 clients keep screening.

    ``serve.run`` gives each imperative deploy a new code version, so this is a rolling replacement: the new
    replicas start, then the old ones stop taking requests, finish what they hold and shut down. No request
    may fail, and the new replica must screen exactly as before: it got the driver's RADCLIP_* settings.
    """
    import argparse
    from concurrent.futures import ThreadPoolExecutor

    from ray import serve

    from radclip.commands import serve as serve_cmd

    for key, value in services["overrides"].items():
        monkeypatch.setenv(f"RADCLIP_{key.upper()}", str(value))
    parser = argparse.ArgumentParser()
    serve_cmd.add_arguments(parser)
    port = services["ray"].rsplit(":", 1)[1]
    args = parser.parse_args(["--ray", ray_cluster, "--replicas", "1", "--host", "127.0.0.1", "--port", port])
    statuses: list[int] = []
    stop = time.monotonic() + 150

    def client(seed: int) -> None:
        with httpx.Client(timeout=60) as c:
            while time.monotonic() < stop:
                r = c.post(f"{services['ray']}/api/v1/screen", content=_png(seed), headers={"content-type": "image/png"})
                statuses.append(r.status_code)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client, i) for i in range(4)]
        time.sleep(1)
        assert serve_cmd.run(args) == 0  # returns once both applications are RUNNING again
        deadline = time.monotonic() + 60
        while serve.status().applications["radclip"].deployments["RadclipService"].replica_states.get("RUNNING") != 1:
            assert time.monotonic() < deadline, "the reader deployment did not go down to 1 replica"
            time.sleep(0.5)
        stop = time.monotonic() + 2  # a little traffic after the old replicas are gone too
        for f in futures:
            f.result()
    assert len(statuses) > 8 and set(statuses) == {200}, sorted(set(statuses))
    a, b = _screen(services["ray"], _png(77)).json(), _screen(services["single"], _png(77)).json()
    a.pop("latency_ms"), b.pop("latency_ms")
    assert a == b


def test_serve_config_file_is_valid_and_maps_to_deployment_options() -> None:
    """deploy/ray_serve.yaml parses as a Serve config, and its options are ones Serve accepts (no cluster)."""
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed; pip install 'ray[serve]>=2.60'")
    import yaml
    from ray import serve
    from ray.serve.schema import ServeDeploySchema

    from radclip.service.ray_deployment import RayServeConfig, replica_class

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "deploy" / "ray_serve.yaml").read_text())
    schema = ServeDeploySchema.model_validate(raw) if hasattr(ServeDeploySchema, "model_validate") else ServeDeploySchema.parse_obj(raw)
    apps = {a.name: a for a in schema.applications}
    assert apps["radclip"].route_prefix == "/" and apps["radclip-writer"].route_prefix is None
    reader = RayServeConfig.from_dict(apps["radclip"].args["serve"])
    opts = reader.reader_options()
    assert opts["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "initial_replicas": 2, "target_ongoing_requests": 4}
    assert opts["graceful_shutdown_timeout_s"] == 30 and opts["health_check_period_s"] == 10
    deployment = serve.deployment(replica_class(), name="RadclipService").options(**opts)  # Serve validates every option
    assert deployment.max_ongoing_requests == 16
    assert RayServeConfig.from_dict(apps["radclip-writer"].args["serve"]).writer_options()["num_replicas"] == 1
    with pytest.raises(ValueError, match="did you mean.*max_replicas"):
        RayServeConfig.from_dict({"max_replica": 3})
    with pytest.raises(ValueError, match="min_replicas <= max_replicas"):
        RayServeConfig(min_replicas=5, max_replicas=2)


def test_serve_ray_options_refuse_bad_values(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``radclip serve --ray`` says what was wrong before touching any cluster."""
    import argparse

    from radclip.commands import serve as serve_cmd

    parser = argparse.ArgumentParser()
    serve_cmd.add_arguments(parser)
    assert serve_cmd.run(parser.parse_args(["--ray", "127.0.0.1:1", "--replicas", "0"])) == 2
    assert "at least 1 reader replica" in capsys.readouterr().err
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    tls = parser.parse_args(["--ray", "127.0.0.1:1", "--ssl-certfile", str(tmp_path / "c.pem"), "--ssl-keyfile", str(tmp_path / "k.pem")])
    assert serve_cmd.run(tls) == 2
    assert "terminate TLS at the load balancer" in capsys.readouterr().err


def test_health_check_is_the_readiness_verdict() -> None:
    """check_health fails while the app has no state, when /readyz would say degraded, and when the database is down."""
    from types import SimpleNamespace

    from radclip.service.ray_deployment import readiness_problem

    assert readiness_problem(None) == "the app has not finished starting"
    report = {"status": "ready", "load_errors": {}}
    engine = _sqlite_engine("sqlite:////nonexistent-dir/radclip.db")  # connecting fails
    state = SimpleNamespace(readiness=lambda: report)
    app = SimpleNamespace(state=SimpleNamespace(radclip=state, radclip_access=SimpleNamespace(keys=SimpleNamespace(engine=engine))))
    assert "database down" in readiness_problem(app)
    app.state.radclip_access = SimpleNamespace(keys=SimpleNamespace(engine=_sqlite_engine("sqlite://")))
    assert readiness_problem(app) is None
    report.update(status="degraded", load_errors={"clip": "FileNotFoundError: x"})
    assert readiness_problem(app) == "/readyz status degraded: load_errors=['clip']"


def _sqlite_engine(url: str) -> Any:
    from sqlalchemy import create_engine

    return create_engine(url)


def test_reader_forwards_writes_to_the_writer_unchanged() -> None:
    """ReplicaRouting without Ray: writes go to the writer's app (status, headers, body as it answered), reads
    stay on the reader, an oversized body is refused before it is buffered, a dead writer is a 503."""
    import asyncio

    from fastapi import FastAPI

    from radclip.service.ray_deployment import ReplicaRouting, call_app

    reader, writer = FastAPI(), FastAPI()

    @reader.get("/api/v1/studies/{sid}")
    def read(sid: str) -> dict[str, str]:
        return {"from": "reader", "sid": sid}

    @writer.post("/api/v1/studies", status_code=201)
    async def ingest(request: Request, study_id: str) -> dict[str, Any]:
        return {"from": "writer", "study_id": study_id, "bytes": len(await request.body()), "key": request.headers.get("x-api-key")}

    class Handle:
        def __init__(self, alive: bool) -> None:
            self.alive = alive
            self.handle_write = self

        async def remote(self, request: dict[str, Any]) -> dict[str, Any]:
            if not self.alive:
                raise ConnectionError("writer replica died")
            return await call_app(writer, request)

    async def go(alive: bool) -> list[httpx.Response]:
        app = ReplicaRouting(reader, "reader-1", writer=Handle(alive), max_body=1000)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as c:
            return [await c.post("/api/v1/studies?study_id=s1", content=b"x" * 500, headers={"x-api-key": "k"}),
                    await c.post("/api/v1/studies?study_id=s2", content=b"x" * 5000),
                    await c.get("/api/v1/studies/s1")]  # fmt: skip

    fwd, big, read_ = asyncio.run(go(alive=True))
    assert fwd.status_code == 201 and fwd.json() == {"from": "writer", "study_id": "s1", "bytes": 500, "key": "k"}
    assert big.status_code == 413
    assert read_.json() == {"from": "reader", "sid": "s1"} and read_.headers["x-radclip-replica"] == "reader-1"
    down = asyncio.run(go(alive=False))[0]
    assert down.status_code == 503 and down.headers["retry-after"] == "5"
    assert down.json()["title"] == "Ingest writer unavailable"


def test_ray_is_imported_only_on_the_ray_paths() -> None:
    """``make run``/``make test`` need no Ray: the CLI, the app and this module's import leave it unloaded."""
    code = ("import sys; import radclip.service.ray_deployment, radclip.service.app; from radclip.cli import build_parser; "
            "build_parser().parse_args(['serve']); print('ray' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__import__("radclip").__file__).resolve().parents[1])})  # fmt: skip
    assert out.stdout.strip().splitlines()[-1] == "False"
