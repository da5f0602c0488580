"""Benchmark the live service on loopback: /screen latency and throughput, against bare PyTorch forwards.

Bounded: a fixed number of requests per phase, then it stops. Starts ``radclip serve`` as its own
process (the client must not share the server's GIL) with the configured (by default embedded)
models and a state directory in a temp folder.

    .venv/bin/python benchmarks/service_bench.py                  # default: 30 single requests, 48 per concurrency level
    .venv/bin/python benchmarks/service_bench.py --backend pytorch

Writes benchmarks/results/service_bench.json (merged by backend) and prints a table.
In the same run it times the bare PyTorch eager forward of the same triage network and image
tower on the same contract tensor — what a user calling torchxrayvision / open_clip directly
pays — and reports /screen p50 as a ratio to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from timing import median_ms  # benchmarks/timing.py (scripts run from this folder's path)

OUT = Path(__file__).with_name("results") / "service_bench.json"


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _image_bytes(settings) -> bytes:  # type: ignore[no-untyped-def]
    manifest = settings.cxr_root / "manifest.csv"
    if manifest.is_file():
        import pandas as pd

        row = pd.read_csv(manifest, usecols=["source", "split", "path"]).query("source == 'nih' and split == 'test'").iloc[0]
        return (settings.cxr_root / row.path).read_bytes()
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((256, 256)) * 255).astype("uint8"), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def bare_pytorch(settings, image: bytes):  # type: ignore[no-untyped-def]
    """A function timing the eager forwards of the triage network and the image tower on one contract tensor."""
    import torch

    from radclip.io.contract import to_contract_tensor
    from radclip.io.loader import load_image
    from radclip.models.preprocess import to_model_input
    from radclip.models.registry import load_pretrained

    triage, tcard = load_pretrained(settings.triage_model)
    clip, _ = load_pretrained(settings.clip_model)
    pixels = load_image(image).pixels
    xt = to_model_input(to_contract_tensor(pixels, tcard.preprocessing.input_size), tcard.preprocessing)
    xc = torch.from_numpy(to_contract_tensor(pixels, clip.preprocessing.input_size))[None]

    def measure(repeats: int = 20) -> dict[str, float]:
        out = {}
        for name, fn in (("triage_forward_ms", lambda: triage(xt)), ("image_embed_ms", lambda: clip.encode_image(xc))):
            with torch.inference_mode():
                out[name] = median_ms(fn, repeats, warmup=3)
        out["both_ms"] = out["triage_forward_ms"] + out["image_embed_ms"]
        return out

    return measure


class ServeProcess:
    """``radclip serve`` in its own process (its own GIL, as deployed), on a free loopback port."""

    def __init__(self, env: dict[str, str]) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "RADCLIP_PORT": str(self.port), "RADCLIP_HOST": "127.0.0.1", "RADCLIP_LOG_LEVEL": "WARNING"}
        self.log_path = Path(tempfile.mkdtemp(prefix="radclip-serve-")) / "serve.log"

    def __enter__(self) -> ServeProcess:
        import subprocess
        import sys

        import httpx

        cmd = [sys.executable, "-m", "radclip.cli", "serve"]
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"radclip serve exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"radclip serve did not start in time; see {self.log_path}")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()


def run(args: argparse.Namespace) -> dict[str, object]:
    import threading

    import httpx

    from radclip.settings import load_settings

    home = Path(tempfile.mkdtemp(prefix="radclip-bench-"))
    # The index is built (default corpus: the unlabelled pool) so /screen can return similar cases too.
    settings = load_settings(home=home, backend=args.backend, index_on_start=args.similar > 0)
    if args.backend != "pytorch":
        from radclip.export.parity import export_and_check, export_and_check_screen

        for role, name in (("triage", settings.triage_model), ("clip", settings.clip_model)):
            list(export_and_check(role, name, settings.resolved_export_dir, if_missing=True))
        list(export_and_check_screen(settings.triage_model, settings.clip_model, settings.resolved_export_dir, if_missing=True))
    image = _image_bytes(settings)
    measure_bare = bare_pytorch(settings, image)
    result: dict[str, object] = {"backend": args.backend}
    env = {"RADCLIP_HOME": str(home), "RADCLIP_BACKEND": args.backend, "RADCLIP_INDEX_ON_START": str(args.similar > 0).lower()}
    with ServeProcess(env) as server:
        url = f"{server.url}/api/v1/screen" + (f"?similar={args.similar}" if args.similar else "")
        index = _wait_for_index(server.url) if args.similar else None
        result["workload"] = {"conditions": len(httpx.get(f"{server.url}/api/v1/conditions").json()),
                              "similar_cases": args.similar, "indexed_studies": index["total"] if index else 0,
                              "screen_path": httpx.get(f"{server.url}/readyz").json()["screen_path"]}  # fmt: skip
        headers = {"content-type": "image/png"}
        with httpx.Client(timeout=120) as client:
            for _ in range(5):
                client.post(url, content=image, headers=headers).raise_for_status()
            # Rounds alternate the bare PyTorch forwards (here, while the server idles) with /screen requests,
            # so both see the same machine state; the ratio uses the medians over all rounds.
            single, served, stages, bare_rounds = [], [], [], []
            for _ in range(args.rounds):
                bare_rounds.append(measure_bare())
                for _ in range(max(1, args.single // args.rounds)):
                    t = time.perf_counter()
                    r = client.post(url, content=image, headers=headers)
                    single.append((time.perf_counter() - t) * 1000)
                    served.append(r.json()["latency_ms"])
                    stages.append({k: float(v) for k, v in (p.split(";dur=") for p in r.headers["server-timing"].split(", "))})
            result["backends_served"] = r.json()["model_version"]
            if args.similar and len(r.json()["similar"] or []) != args.similar:
                raise RuntimeError(f"/screen returned {r.json()['similar']!r} similar cases, expected {args.similar}")
        result["single"] = {"n": len(single), "p50_ms": _pct(single, 50), "p95_ms": _pct(single, 95), "p99_ms": _pct(single, 99),
                            "server_p50_ms": _pct(served, 50),
                            "server_stages_p50_ms": {k: _pct([st[k] for st in stages], 50) for k in stages[0]}}  # fmt: skip
        bare = {k: float(np.median([b[k] for b in bare_rounds])) for k in bare_rounds[0]}
        result["bare_pytorch"] = {**bare, "rounds_both_ms": [round(b["both_ms"], 2) for b in bare_rounds]}
        result["ratio_p50_to_bare_pytorch"] = result["single"]["p50_ms"] / bare["both_ms"]  # type: ignore[index]
        levels = {}
        local = threading.local()  # one keep-alive client per worker thread, as a real client pool would

        def one(_: int) -> float:
            if not hasattr(local, "client"):
                local.client = httpx.Client(timeout=300)
            t = time.perf_counter()
            local.client.post(url, content=image, headers=headers).raise_for_status()
            return (time.perf_counter() - t) * 1000

        for conc in (1, 4, 16):
            t0 = time.perf_counter()
            with ThreadPoolExecutor(conc) as pool:
                lat = list(pool.map(one, range(args.per_level)))
            wall = time.perf_counter() - t0
            levels[str(conc)] = {"requests": args.per_level, "images_per_s": args.per_level / wall,
                                 "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99)}  # fmt: skip
        result["concurrency"] = levels
        batch = httpx.get(f"{server.url}/metrics").text
        result["mean_image_batch"] = _mean_batch(batch)
    return result


def _wait_for_index(url: str, timeout: float = 600) -> dict[str, object]:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        index = httpx.get(f"{url}/readyz").json()["index"]
        if index["state"] == "ready":
            return index  # type: ignore[no-any-return]
        if index["state"] == "failed":
            raise RuntimeError(f"the case index failed to build: {index}")
        time.sleep(0.5)
    raise RuntimeError("the case index was not ready in time")


def _mean_batch(metrics: str) -> float | None:
    total = count = None
    for line in metrics.splitlines():
        if line.startswith("radclip_batch_size_sum"):
            total = float(line.split()[-1])
        if line.startswith("radclip_batch_size_count"):
            count = float(line.split()[-1])
    return (total / count) if total is not None and count else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["auto", "pytorch", "onnxruntime"], default="auto")
    p.add_argument("--single", type=int, default=150, help="sequential /screen requests for the latency percentiles")
    p.add_argument("--label", default=None, help="key of this run in the results file (default: the backend)")
    p.add_argument("--rounds", type=int, default=5, help="rounds alternating bare PyTorch timing and /screen requests")
    p.add_argument("--per-level", type=int, default=48, help="requests at each concurrency level (1, 4, 16)")
    p.add_argument("--similar", type=int, default=10, help="similar prior cases asked of /screen (0: screening only)")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = run(args)
    result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data = json.loads(OUT.read_text()) if OUT.is_file() else {}
    result["models"] = {"triage": os.environ.get("RADCLIP_TRIAGE_MODEL", "default"), "clip": os.environ.get("RADCLIP_CLIP_MODEL", "default")}
    data[args.label or args.backend] = result
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
