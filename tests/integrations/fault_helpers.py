"""A real ``radclip serve`` subprocess for the fault tests: start, wait for readiness, SIGKILL, PNG bodies."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[2]


def png_bytes(seed: int, size: int = 64) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    pixels = (np.random.default_rng(seed).random((size, size)) * 255).astype(np.uint8)
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def write_corpus(folder: Path, n: int, seed0: int = 1000) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"case{i:04d}.png").write_bytes(png_bytes(seed0 + i))
    return folder


class Service:
    """``radclip serve`` on loopback (open local mode: no keys) over one RADCLIP_HOME, restartable."""

    def __init__(self, home: Path, models: tuple[Path, Path], corpus: Path, port: int, **env: str) -> None:
        self.home, self.port, self.proc = home, port, None
        self.base = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "RADCLIP_HOME": str(home),
                    "RADCLIP_TRIAGE_MODEL": str(models[0]), "RADCLIP_CLIP_MODEL": str(models[1]),
                    "RADCLIP_CORPUS": str(corpus), "RADCLIP_LOG_LEVEL": "WARNING", "RADCLIP_TORCH_THREADS": "1",
                    "HF_HUB_OFFLINE": "1", **env}  # fmt: skip
        self.log = home.parent / f"serve-{port}.log"

    def start(self, timeout_s: float = 90) -> None:
        cmd = [sys.executable, "-m", "radclip.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"radclip serve exited: {self.log.read_text()[-2000:]}"
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"radclip serve did not answer in {timeout_s} s: {self.log.read_text()[-2000:]}")

    def readyz(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.base}/readyz", timeout=10).json())

    def wait_index(self, timeout_s: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready = self.readyz()
            if ready["index"]["state"] in ("ready", "failed"):
                return ready
            time.sleep(0.2)
        raise AssertionError(f"the index did not become ready in {timeout_s} s: {self.readyz()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
