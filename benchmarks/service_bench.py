"""Benchmark the live service on loopback: /screen latency and throughput, against bare PyTorch forwards.

Bounded: a fixed number of requests per phase, then it stops. Starts its own uvicorn server with
the configured (by default embedded) models and a state directory in a temp folder.

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


def bare_pytorch_ms(settings, image: bytes, repeats: int = 20) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Median eager forward time of the triage network and the image tower on one contract tensor."""
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
    out = {}
    for name, fn in (("triage_forward_ms", lambda: triage(xt)), ("image_embed_ms", lambda: clip.encode_image(xc))):
        with torch.inference_mode():
            out[name] = median_ms(fn, repeats, warmup=3)
    out["both_ms"] = out["triage_forward_ms"] + out["image_embed_ms"]
    return out


def run(args: argparse.Namespace) -> dict[str, object]:
    import httpx

    from radclip.service.app import create_app
    from radclip.service.background import BackgroundServer as LiveServer
    from radclip.settings import load_settings

    home = Path(tempfile.mkdtemp(prefix="radclip-bench-"))
    settings = load_settings(home=home, backend=args.backend, index_on_start=False)
    if args.backend != "pytorch":
        from radclip.export.parity import export_and_check

        for role, name in (("triage", settings.triage_model), ("clip", settings.clip_model)):
            list(export_and_check(role, name, settings.resolved_export_dir, if_missing=True))
    image = _image_bytes(settings)
    bare = bare_pytorch_ms(settings, image)
    result: dict[str, object] = {"backend": args.backend, "bare_pytorch": bare}
    with LiveServer(create_app(settings)) as server:
        url = f"{server.url}/api/v1/screen"
        headers = {"content-type": "image/png"}
        with httpx.Client(timeout=120) as client:
            for _ in range(3):
                client.post(url, content=image, headers=headers).raise_for_status()
            single, served = [], []
            for _ in range(args.single):
                t = time.perf_counter()
                r = client.post(url, content=image, headers=headers)
                single.append((time.perf_counter() - t) * 1000)
                served.append(r.json()["latency_ms"])
            result["backends_served"] = r.json()["model_version"]
        result["single"] = {"n": len(single), "p50_ms": _pct(single, 50), "p95_ms": _pct(single, 95), "p99_ms": _pct(single, 99),
                            "server_p50_ms": _pct(served, 50)}  # fmt: skip
        result["ratio_p50_to_bare_pytorch"] = result["single"]["p50_ms"] / bare["both_ms"]  # type: ignore[index]
        levels = {}
        for conc in (1, 4, 16):
            def one(_: int) -> float:
                t = time.perf_counter()
                httpx.post(url, content=image, headers=headers, timeout=300).raise_for_status()
                return (time.perf_counter() - t) * 1000

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
    p.add_argument("--single", type=int, default=30, help="sequential /screen requests for the latency percentiles")
    p.add_argument("--per-level", type=int, default=48, help="requests at each concurrency level (1, 4, 16)")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = run(args)
    result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data = json.loads(OUT.read_text()) if OUT.is_file() else {}
    data[args.backend] = result
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
