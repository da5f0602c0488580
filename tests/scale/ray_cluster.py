"""A throwaway local Ray cluster for tests and benchmarks: a head and N worker node processes on loopback.

Every port is picked free at run time and the temp dir is private, so it never meets another
cluster on the same machine (nor Redis on 6379). Each ``ray start --block`` runs in its own
process group; :meth:`LocalRayCluster.stop` kills those groups (never ``ray stop``, which would
stop every Ray process of the user).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class RayUnavailable(RuntimeError):
    """Ray is not importable or the cluster did not come up; tests skip with this reason."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_range(width: int = 40) -> tuple[int, int]:
    for _ in range(50):
        base = free_port()
        if base + width >= 65000:
            continue
        try:
            socks = []
            for p in range(base, base + width):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base, base + width - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RayUnavailable("no free range of worker ports found")


class LocalRayCluster:
    def __init__(self, workers: int = 1, cpus_per_node: int = 1, env: dict[str, str] | None = None,
                 start_timeout_s: float = 60.0) -> None:  # fmt: skip
        self.workers, self.cpus, self.timeout = workers, cpus_per_node, start_timeout_s
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
        self.temp_dir = tempfile.mkdtemp(prefix="rc", dir="/tmp")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ray_bin = str(Path(sys.executable).with_name("ray"))

    def _node_args(self) -> list[str]:
        lo, hi = _free_range()
        return ["--node-ip-address=127.0.0.1", f"--num-cpus={self.cpus}", "--num-gpus=0", "--block",
                f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
                f"--min-worker-port={lo}", f"--max-worker-port={hi}", f"--dashboard-agent-listen-port={free_port()}",
                f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
                f"--metrics-export-port={free_port()}", "--disable-usage-stats",
                "--object-store-memory=200000000"]  # fmt: skip

    def _spawn(self, args: list[str], log_name: str) -> None:
        log = open(Path(self.temp_dir) / log_name, "wb")  # noqa: SIM115 (closed with the process)
        self.procs.append(subprocess.Popen([self.ray_bin, "start", *args], stdout=log, stderr=subprocess.STDOUT,
                                           env=self.env, start_new_session=True))  # fmt: skip

    def _wait_nodes(self, n: int) -> None:
        probe = ("import ray,sys,time\nray.init(address=sys.argv[1], log_to_driver=False)\n"
                 "t=time.time()\nwhile sum(x['Alive'] for x in ray.nodes())<int(sys.argv[2]) and time.time()-t<40: time.sleep(0.5)\n"
                 "print(sum(x['Alive'] for x in ray.nodes()))")  # fmt: skip
        deadline = time.monotonic() + self.timeout
        last = ""
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                break
            try:
                out = subprocess.run([sys.executable, "-c", probe, self.address, str(n)], env=self.env, capture_output=True,
                                     timeout=max(5.0, deadline - time.monotonic()))  # fmt: skip
            except subprocess.TimeoutExpired:
                break
            last = out.stdout.decode().strip() + out.stderr.decode()[-400:]
            if out.returncode == 0 and out.stdout.decode().strip().endswith(str(n)):
                return
            time.sleep(1.0)
        logs = "".join((Path(self.temp_dir) / f).read_text(errors="replace")[-600:] for f in ("head.log", "worker0.log")
                       if (Path(self.temp_dir) / f).is_file())  # fmt: skip
        hint = ""
        if "InvalidAuthToken" in last + logs and (Path.home() / ".ray" / "auth_token").is_file():
            # seen with ray 2.60: a local ray.init() leaves ~/.ray/auth_token, and the probe then fails to connect
            hint = " (a stray ~/.ray/auth_token from an earlier local ray.init() breaks this; move it away and rerun)"
        raise RayUnavailable(
            f"local Ray cluster did not reach {n} node(s) in {self.timeout:.0f}s{hint}: {last[-400:]} {logs}"
        )

    def _wait_port(self, port: int) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline and all(p.poll() is None for p in self.procs):
            with socket.socket() as s:
                s.settimeout(1.0)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.3)
        raise RayUnavailable(
            f"the Ray head did not open its GCS port {port} in {self.timeout:.0f}s (see {self.temp_dir}/head.log)"
        )

    def start(self) -> LocalRayCluster:
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            raise RayUnavailable(f"ray is not importable ({exc}); install ray[data]>=2.60") from exc
        self._spawn(["--head", f"--port={self.port}", f"--ray-client-server-port={free_port()}", "--include-dashboard=false",
                     f"--temp-dir={self.temp_dir}", *self._node_args()], "head.log")  # fmt: skip
        try:
            self._wait_port(
                self.port
            )  # GCS listening: enough for worker nodes to register (one full probe below)
            for i in range(self.workers):
                self._spawn([f"--address={self.address}", *self._node_args()], f"worker{i}.log")
            self._wait_nodes(1 + self.workers)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in self.procs:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, sig)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(p.poll() is None for p in self.procs):
                time.sleep(0.2)
        self._kill_strays()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _kill_strays(self) -> None:
        """Ray processes of this cluster that left the process group (their command line names our temp dir or port)."""
        addr = f"127.0.0.1:{self.port}"
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
                continue
            try:
                args = (pid_dir / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if any(a == addr or a.endswith(f"={addr}") or a == self.temp_dir or a.startswith(f"{self.temp_dir}/")
                   or a.endswith(f"={self.temp_dir}") or f"={self.temp_dir}/" in a for a in args):  # fmt: skip
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(pid_dir.name), signal.SIGKILL)

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
