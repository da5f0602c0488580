"""Benchmark what shadow mode costs ``/screen``: p50 latency with no shadow vs a shadow triage model.

A real uvicorn server on loopback (in this process, ``BackgroundServer``) serves the shipped triage
and image-text models on PyTorch. The shadow is the shipped triage network with its head negated,
saved to a temporary folder and staged through the admin API. Requests are sequential and
interleaved in blocks (off, on, off, on, ...) so a change in machine load hits both arms alike.
Bounded: ``BLOCKS`` x ``PER_BLOCK`` requests per arm, 224 px PNGs.

    PYTHONPATH=src .venv/bin/python benchmarks/shadow_bench.py

Writes benchmarks/results/shadow_bench.json and prints the two medians.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

OUT = Path(__file__).with_name("results") / "shadow_bench.json"
BLOCKS, PER_BLOCK, WARMUP = 4, 10, 5
SHIPPED = "radclip-mobilenetv2-nih"


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((224, 224)) * 255).astype("uint8"), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _shadow_copy(folder: Path) -> Path:
    import torch

    from radclip.models.registry import load_pretrained
    from radclip.models.weights import save_state_dict

    model, card = load_pretrained(SHIPPED)
    with torch.no_grad():
        model.classifier.weight.neg_()
        model.classifier.bias.neg_()
    out = folder / "shadow.safetensors"
    sha = save_state_dict(model.state_dict(), out)
    dataclasses.replace(
        card, version=card.version + "-bench", weights_file=out.name, weights_sha256=sha
    ).save(folder / "shadow.card.json")
    return out


def _timed(url: str, seed: int) -> float:
    start = time.perf_counter()
    r = httpx.post(
        url + "/api/v1/screen", content=_png(seed), headers={"Content-Type": "image/png"}, timeout=120
    )
    r.raise_for_status()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    from radclip.service.app import create_app
    from radclip.service.background import BackgroundServer
    from radclip.settings import load_settings

    tmp = Path(tempfile.mkdtemp(prefix="shadow-bench-"))
    shadow = _shadow_copy(tmp)
    settings = load_settings(home=tmp / "home", backend="pytorch", index_on_start=False)
    app = create_app(settings)
    times: dict[str, list[float]] = {"off": [], "on": []}
    with BackgroundServer(app) as srv:
        admin = httpx.post(srv.url + "/api/v1/models", json={"path": str(shadow)}, timeout=300).json()
        ref = f"{SHIPPED}@{admin['changed'][0]['version']}"
        for i in range(WARMUP):
            _timed(srv.url, 10_000 + i)
        seed = 0
        for _ in range(BLOCKS):
            for arm in ("off", "on"):
                if arm == "on":
                    httpx.post(f"{srv.url}/api/v1/models/{ref}/shadow", timeout=300).raise_for_status()
                else:
                    httpx.post(
                        f"{srv.url}/api/v1/models/{SHIPPED}/rollback", timeout=300
                    )  # retire the shadow, if any
                for _ in range(PER_BLOCK):
                    times[arm].append(_timed(srv.url, seed))
                    seed += 1
                app.state.radclip_ops.shadow.drain()  # the next block starts with an idle shadow worker
        outcomes = dict(app.state.radclip_ops.shadow.outcomes)
    p50 = {arm: float(np.median(v)) for arm, v in times.items()}
    result = {"p50_ms": p50, "overhead_pct": 100 * (p50["on"] / p50["off"] - 1), "n_per_arm": len(times["off"]),
              "p90_ms": {arm: float(np.percentile(v, 90)) for arm, v in times.items()}, "shadow_jobs": outcomes,
              "machine": {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "python": platform.python_version()},
              "images": "224x224 random-noise PNGs", "models": f"{SHIPPED} + radclip-medclip-mini, PyTorch"}  # fmt: skip
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"/screen p50: no shadow {p50['off']:.1f} ms, shadow {p50['on']:.1f} ms ({result['overhead_pct']:+.1f}%)"
    )


if __name__ == "__main__":
    main()
