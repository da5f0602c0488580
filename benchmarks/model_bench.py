"""Per-model speed against the compute floor: PyTorch eager vs ONNX Runtime fp32, static int8 and dynamic int8.

For each model: FLOPs of one forward (torch's FlopCounterMode; multiply-add = 2 FLOPs), the
machine's measured fp32 GEMM throughput in the same run, and median latency at batch 1 and 16.
Every time is reported as a ratio to the compute floor (FLOPs / GEMM GFLOP/s) and to PyTorch
eager. Production architectures (DenseNet-121, ViT-B/32) are timed with random weights: speed
does not depend on trained values. Static int8 is calibrated on 16 train-split images for the
shipped models (random inputs for the random-weight ones: this table is about speed; the AUC
change of int8 is measured by benchmarks/quant_eval.py).

    .venv/bin/python benchmarks/model_bench.py            # writes benchmarks/results/model_bench.json
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from timing import median_ms  # benchmarks/timing.py (scripts run from this folder's path)

OUT = Path(__file__).with_name("results") / "model_bench.json"


def gemm_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    ms = median_ms(lambda: torch.mm(a, b), repeats)
    return 2 * n**3 / (ms / 1000) / 1e9


def flops(module: torch.nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(x)
    return int(counter.get_total_flops())


def ort_session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def export(module: torch.nn.Module, x: torch.Tensor, path: Path) -> Path:
    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel has no ONNX symbol
    with torch.no_grad():
        torch.onnx.export(module.eval(), (x,), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, opset_version=17, dynamo=False)  # fmt: skip
    return path


def quantize(path: Path, mode: str, calibration: Any) -> Path:
    """Whole-graph int8 of ``path`` (radclip.export.quantize): ``static`` QDQ u8s8 per-channel, or ``dynamic``."""
    from radclip.export.quantize import QuantConfig, quantize_onnx

    return quantize_onnx(path, path.with_suffix(f".{mode}-int8.onnx"), QuantConfig(mode=mode),  # type: ignore[arg-type]
                         calibration=calibration if mode == "static" else None)  # fmt: skip


def calibration(name: str, channels: int, size: int) -> Any:
    """16 train-split contract tensors for the shipped models; seeded uniform noise for the others."""
    import numpy as np

    from radclip.settings import get_settings

    root = get_settings().cxr_root
    if name.startswith(("triage: radclip", "image tower: radclip")) and (root / "manifest.csv").is_file():
        from radclip.export.quantize import calibration_images

        return calibration_images(root / "manifest.csv", root, size, n=16)
    return _ArrayReader(np.random.default_rng(0).random((16, channels, size, size), dtype=np.float32))


class _ArrayReader:
    """ONNX Runtime CalibrationDataReader over any (N, C, S, S) array (the contract reader takes C = 1 only)."""

    def __init__(self, x: Any) -> None:
        self.x, self.i = x, 0

    def get_next(self) -> dict[str, Any] | None:
        if self.i >= len(self.x):
            return None
        self.i += 8
        return {"x": self.x[self.i - 8 : self.i]}

    def rewind(self) -> None:
        self.i = 0


def models() -> dict[str, tuple[torch.nn.Module, int]]:
    """name -> (module taking a float input (B, C, S, S), input size). Shipped models when present."""
    import open_clip

    from radclip.export.onnx_export import ImageGraph
    from radclip.models.registry import create_model, list_shipped, load_pretrained

    out: dict[str, tuple[torch.nn.Module, int]] = {}
    if "radclip-mobilenetv2-nih" in list_shipped():
        m, card = load_pretrained("radclip-mobilenetv2-nih")
        out["triage: radclip-mobilenetv2-nih"] = (m.eval(), card.preprocessing.input_size)
    if "radclip-medclip-mini" in list_shipped():
        c, _ = load_pretrained("radclip-medclip-mini")
        out["image tower: radclip-medclip-mini"] = (ImageGraph(c).eval(), c.preprocessing.input_size)
    out["triage: densenet121 (torchxrayvision layout)"] = (create_model("densenet121_triage").eval(), 224)
    vit = open_clip.create_model("ViT-B-32", pretrained=None).visual.eval()
    out["image tower: open_clip ViT-B/32"] = (vit, 224)
    return out


def in_chans(module: torch.nn.Module) -> int:
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            return int(m.in_channels)
    return 1


def bench_model(name: str, module: torch.nn.Module, size: int, gflops: float, tmp: Path) -> dict[str, Any]:
    c = 1 if name.startswith("image tower: radclip") else in_chans(module)
    x1, x16 = torch.rand(1, c, size, size), torch.rand(16, c, size, size)
    f = flops(module, x1)
    floor_ms = f / (gflops * 1e9) * 1000
    row: dict[str, Any] = {"gflops_per_image": f / 1e9, "compute_floor_ms_b1": floor_ms}
    with torch.inference_mode():
        row["pytorch_b1_ms"] = median_ms(lambda: module(x1), 15)
        row["pytorch_b16_ms"] = median_ms(lambda: module(x16), 3, warmup=1)
    path = export(module, x1, tmp / (name.replace(" ", "_").replace(":", "").replace("/", "") + ".onnx"))
    calib = calibration(name, c, size)
    for tag, p in (("ort_fp32", path), ("ort_int8", quantize(path, "static", calib)), ("ort_int8_dynamic", quantize(path, "dynamic", None))):
        sess = ort_session(p)
        row[f"{tag}_b1_ms"] = median_ms(lambda s=sess: s.run(None, {"x": x1.numpy()}), 15)
        row[f"{tag}_b16_ms"] = median_ms(lambda s=sess: s.run(None, {"x": x16.numpy()}), 3, warmup=1)
    for key in [k for k in row if k.endswith("_ms") and k.startswith(("pytorch", "ort"))]:
        batch = 16 if "_b16" in key else 1
        row[key.replace("_ms", "_x_floor")] = row[key] / (floor_ms * batch)
        row[key.replace("_ms", "_images_per_s")] = batch / (row[key] / 1000)
    row["ort_fp32_speedup_vs_eager_b1"] = row["pytorch_b1_ms"] / row["ort_fp32_b1_ms"]
    row["ort_int8_speedup_vs_eager_b1"] = row["pytorch_b1_ms"] / row["ort_int8_b1_ms"]
    row["ort_int8_speedup_vs_fp32_b1"] = row["ort_fp32_b1_ms"] / row["ort_int8_b1_ms"]
    return row


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    gflops = gemm_gflops()
    result: dict[str, Any] = {"gemm_fp32_gflops": gflops, "torch_threads": torch.get_num_threads(), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (module, size) in models().items():
            result["models"][name] = bench_model(name, module, size, gflops, Path(tmp))
            print(name, json.dumps({k: round(v, 3) for k, v in result["models"][name].items()}))
    result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform()}
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
