"""Training speed of the triage network on CPU: which of channels_last, bf16 autocast, torch.compile and
cached decoded tensors pay for themselves (issue 14, section 4).

One optimiser step = augment + forward + masked BCE + backward + AdamW, batch 32 at 224 px, MobileNetV2
(the shipped triage architecture) and DenseNet-121 (the spec's). Every variant is timed in the same run
as the fp32 eager baseline and reported as a ratio (> 1 = faster). Data loading is timed separately:
decoding the shared PNGs through the image contract vs reading the same images from a cached uint8 tensor.

    .venv/bin/python benchmarks/train_speed.py [--steps 6] [--archs mobilenetv2_triage,densenet121_triage]

Writes benchmarks/results/train_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from benchmarks.timing import median_ms

from radclip.io.labels import NIH_LABELS
from radclip.models.registry import create_model
from radclip.train.triage_trainer import augment_batch, masked_bce

OUT = Path(__file__).parent / "results" / "train_speed.json"


def _step_fn(arch: str, batch: int, size: int, channels_last: bool, bf16: bool, compiled: bool):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = create_model(arch, pretrained=False)
    model.train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    fwd = torch.compile(model) if compiled else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 1, size, size)
    y = (torch.rand(batch, len(NIH_LABELS)) < 0.2).float()
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        xb = augment_batch(x, gen)
        xb = (xb - 0.449) / 0.226
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = fwd(xb)
            logits = logits.logits if hasattr(logits, "logits") else logits
        loss = masked_bce(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def model_variants(arch: str, steps: int, batch: int, size: int) -> dict[str, dict[str, float]]:
    variants = {"fp32 eager": (False, False, False), "channels_last": (True, False, False), "bf16 autocast": (False, True, False),
                "channels_last + bf16": (True, True, False), "torch.compile": (False, False, True)}
    out: dict[str, dict[str, float]] = {}
    for name, (cl, bf, comp) in variants.items():
        t0 = time.perf_counter()
        try:
            ms = median_ms(_step_fn(arch, batch, size, cl, bf, comp), repeats=steps, warmup=2)
        except Exception as exc:  # a variant that does not run here is reported, not hidden
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        out[name] = {"ms_per_step": round(ms, 1), "images_per_s": round(batch / ms * 1000, 1), "wall_incl_warmup_s": round(time.perf_counter() - t0, 1)}
    base = out["fp32 eager"]["ms_per_step"]
    for v in out.values():
        if "ms_per_step" in v:
            v["speed_vs_fp32_eager"] = round(base / v["ms_per_step"], 3)
    return out


def data_loading(n: int, size: int) -> dict[str, float] | None:
    from radclip.io.datasets import ManifestDataset
    from radclip.settings import get_settings

    manifest = get_settings().cxr_root / "manifest.csv"
    if not manifest.is_file():
        return None
    ds = ManifestDataset(manifest, manifest.parent, split="train", sources=["nih"], size=size)
    idx = list(range(min(n, len(ds))))
    t = time.perf_counter()
    arrays = [ds.image(i) for i in idx]
    decode_ms = (time.perf_counter() - t) * 1000 / len(idx)
    cache = torch.from_numpy(np.stack([(a * 255).round().astype(np.uint8) for a in arrays]))
    t = time.perf_counter()
    for _ in range(5):
        _ = cache[torch.randperm(len(idx))[:32]].float().div_(255)
    cached_ms = (time.perf_counter() - t) * 1000 / (5 * 32)
    return {"images": len(idx), "decode_png_ms_per_image": round(decode_ms, 3), "cached_uint8_ms_per_image": round(cached_ms, 4),
            "speed_vs_decode": round(decode_ms / cached_ms, 1), "cache_mb_per_1000_images": round(size * size / 1e3, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--archs", default="mobilenetv2_triage,densenet121_triage")
    args = parser.parse_args()
    result = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "platform": platform.platform(),
                          "load_average_at_start": os.getloadavg()[0]},
              "batch": args.batch, "size": args.size, "steps_timed": args.steps, "models": {}}
    for arch in args.archs.split(","):
        result["models"][arch] = model_variants(arch, args.steps, args.batch, args.size)
        print(arch, json.dumps(result["models"][arch]), flush=True)
    result["data_loading"] = data_loading(256, args.size)
    print("data", json.dumps(result["data_loading"]), flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
