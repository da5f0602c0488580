"""Benchmark /screen on Ray Serve at 1, 2 and 4 replicas against the single-process service, in one run.

Bounded: a fixed number of requests per setting. The single-process service runs as ``radclip serve``
(its own process, as in service_bench.py); the Ray side is a one-node Ray cluster started here on
loopback (free ports, a private temp dir, stopped at the end) with Serve's proxy in front of the
reader replicas, all on the same settings and models (default: the embedded ones, ONNX Runtime).

    nice -n 15 .venv/bin/python benchmarks/ray_serve_bench.py                # 192 requests per setting, 16 clients
    nice -n 15 .venv/bin/python benchmarks/ray_serve_bench.py --replicas 1 2 --requests 48

Writes benchmarks/results/ray_serve_bench.json: per setting, images/s, p50/p99 at ``--clients``
concurrent clients and p50 of sequential requests (the proxy hop's cost), plus the scaling
efficiency ``images/s(n) / (n * images/s(1 replica))`` and the ratio to the single-process service.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np
from service_bench import (  # benchmarks/service_bench.py (scripts run from this folder's path)
    ServeProcess,
    _image_bytes,
)

OUT = Path(__file__).with_name("results") / "ray_serve_bench.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OneNodeRay:
    """``ray start --head --block`` on loopback, every port picked free now, its own session; killed as a group."""

    def __init__(self, num_cpus: int, env: dict[str, str]) -> None:
        self.temp = tempfile.mkdtemp(prefix="rb", dir="/tmp")
        self.port, self.env, self.num_cpus = _free_port(), env, num_cpus

    def __enter__(self) -> OneNodeRay:
        lo = 20_000 + (os.getpid() % 150) * 100  # a worker-port window of our own
        ports = {n: _free_port() for n in ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
                                            "dashboard-agent-grpc-port", "metrics-export-port", "runtime-env-agent-port",
                                            "ray-client-server-port")}  # fmt: skip
        cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={self.port}",
               "--node-ip-address=127.0.0.1", "--include-dashboard=false", f"--temp-dir={self.temp}",
               f"--num-cpus={self.num_cpus}", "--disable-usage-stats", f"--min-worker-port={lo}", f"--max-worker-port={lo + 99}",
               *(f"--{k}={v}" for k, v in ports.items())]  # fmt: skip
        self.log = open(Path(self.temp) / "ray.log", "wb")  # noqa: SIM115 (closed in __exit__)
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"ray start failed; see {self.temp}/ray.log")

    def __exit__(self, *exc: object) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
        self.log.close()


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def measure(url: str, image: bytes, requests: int, clients: int, sequential: int) -> dict[str, Any]:
    """Warm up, then ``sequential`` one-at-a-time requests, then ``requests`` from ``clients`` concurrent clients."""
    import httpx

    headers = {"content-type": "image/png"}
    local = threading.local()

    def one(_: int) -> tuple[float, str]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=300)
        t = time.perf_counter()
        r = local.client.post(url, content=image, headers=headers)
        r.raise_for_status()
        return (time.perf_counter() - t) * 1000, r.headers.get("x-radclip-replica", "single")

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(2 * clients)))  # every replica's first requests (lazy imports, first runs)
    seq = [one(i)[0] for i in range(sequential)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        out = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - t0
    lat = [ms for ms, _ in out]
    answered: dict[str, int] = {}
    for _, replica in out:
        answered[replica] = answered.get(replica, 0) + 1
    return {"requests": requests, "clients": clients, "images_per_s": requests / wall, "p50_ms": _pct(lat, 50),
            "p99_ms": _pct(lat, 99), "sequential_p50_ms": _pct(seq, 50), "requests_per_replica": sorted(answered.values())}  # fmt: skip


def _wait_ready(url: str, timeout: float = 600) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(httpx.HTTPError, ValueError):
            r = httpx.get(f"{url}/readyz", timeout=10)
            if r.status_code == 200 and r.json()["status"] == "ready":
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready in {timeout:.0f} s")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from radclip.settings import load_settings

    home = Path(tempfile.mkdtemp(prefix="radclip-raybench-"))
    export = Path(args.export_dir)
    overrides = {"home": str(home), "backend": args.backend, "export_dir": str(export), "index_on_start": "false",
                 "log_level": "WARNING"}  # fmt: skip
    settings = load_settings(**overrides)
    if args.backend != "pytorch":
        from radclip.export.parity import export_and_check, export_and_check_screen

        for role, name in (("triage", settings.triage_model), ("clip", settings.clip_model)):
            list(export_and_check(role, name, export, if_missing=True))
        list(export_and_check_screen(settings.triage_model, settings.clip_model, export, if_missing=True))
    image = _image_bytes(settings)
    result: dict[str, Any] = {"backend": args.backend, "workload": "/api/v1/screen, screening only (no similar cases)"}
    env = {f"RADCLIP_{k.upper()}": v for k, v in overrides.items()}
    with ServeProcess(env) as server:
        _wait_ready(server.url)
        result["single_process"] = measure(f"{server.url}/api/v1/screen", image, args.requests, args.clients, args.sequential)
    print("single process:", result["single_process"], flush=True)
    result["ray"] = _ray_settings(args, overrides, image, home)
    base = result["ray"][str(min(args.replicas))]["images_per_s"] / min(args.replicas)
    single = result["single_process"]["images_per_s"]
    for n, r in result["ray"].items():
        r["scaling_efficiency"] = r["images_per_s"] / (int(n) * base)
        r["vs_single_process"] = r["images_per_s"] / single
    return result


def _ray_settings(args: argparse.Namespace, overrides: dict[str, str], image: bytes, home: Path) -> dict[str, Any]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), "RAY_USAGE_STATS_ENABLED": "0"}
    out: dict[str, Any] = {}
    with OneNodeRay(num_cpus=max(args.replicas), env=env) as cluster:
        import ray
        from ray import serve

        from radclip.service.ray_deployment import RayServeConfig, deploy

        os.environ.update({"PYTHONPATH": env["PYTHONPATH"]})
        ray.init(address=f"127.0.0.1:{cluster.port}", log_to_driver=False)
        port = _free_port()
        try:
            for i, n in enumerate(sorted(args.replicas)):
                t = time.perf_counter()
                config = RayServeConfig(replicas=n, num_cpus=1, proxy_location="HeadOnly", http_port=port, single_writer=False)
                deploy(f"127.0.0.1:{cluster.port}", overrides, config, prepare=i == 0)
                _wait_ready(f"http://127.0.0.1:{port}")
                out[str(n)] = {"deploy_s": time.perf_counter() - t,
                               **measure(f"http://127.0.0.1:{port}/api/v1/screen", image, args.requests, args.clients, args.sequential)}  # fmt: skip
                print(f"{n} replica(s):", out[str(n)], flush=True)
        finally:
            with suppress(Exception):
                serve.shutdown()
            ray.shutdown()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["auto", "pytorch", "onnxruntime"], default="auto")
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4], help="reader replica counts to measure")
    p.add_argument("--requests", type=int, default=192, help="concurrent-phase requests per setting")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients")
    p.add_argument("--sequential", type=int, default=30, help="one-at-a-time requests per setting (the proxy hop's cost)")
    p.add_argument("--export-dir", default=str(Path(tempfile.gettempdir()) / "radclip-raybench-export"),
                   help="ONNX exports (kept between runs)")  # fmt: skip
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = run(args)
    result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                         "note": "client, proxy and replicas share the machine's cores"}  # fmt: skip
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
