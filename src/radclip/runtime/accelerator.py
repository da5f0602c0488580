"""Which device the PyTorch runners use and which ONNX Runtime execution providers the sessions get.

One pure rule (:func:`select_accelerator`) over what the machine offers, and one thin probe
(:func:`detect`) that asks torch and onnxruntime when called, never at import. The runners are
built once at start with the result; ``/readyz`` reports it.
"""

from __future__ import annotations

import ctypes.util
from dataclasses import dataclass
from typing import Any

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TENSORRT_EP = "TensorrtExecutionProvider"
DEVICE_ENV = "RADCLIP_DEVICE"  # settings.device under the settings' RADCLIP_ prefix
_FIX_TORCH = "install a CUDA build of torch (https://pytorch.org/get-started/locally/)"
_FIX_ORT = "install onnxruntime-gpu instead of onnxruntime (`pip uninstall onnxruntime && pip install 'radclip[gpu]'`)"


@dataclass(frozen=True)
class Accelerator:
    device: str  # torch device of the PyTorch runners: "cpu" or "cuda"
    onnx_providers: tuple[str, ...]  # ONNX Runtime execution providers, in order of preference
    torch_dtype: str  # always "float32": fp16 on CUDA is not enabled (its parity was never checked on a GPU)
    requested: str  # RADCLIP_DEVICE as given: "cpu", "cuda" or "auto"
    reason: str  # why this selection, in a sentence (shown on /readyz; no paths)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "onnx_providers": list(self.onnx_providers), "torch_dtype": self.torch_dtype,
                "requested": self.requested, "reason": self.reason}  # fmt: skip


CPU_ONLY = Accelerator("cpu", (CPU_EP,), "float32", "cpu", f"{DEVICE_ENV}=cpu")


def select_accelerator(requested: str, *, cuda_available: bool, ort_providers: list[str] | tuple[str, ...],
                       tensorrt_libs: bool = False, backend: str = "auto") -> Accelerator:  # fmt: skip
    """The selection for ``requested`` (``cpu`` | ``cuda`` | ``auto``) on a machine offering what the flags say.

    ``cuda_available``: torch sees a CUDA device. ``ort_providers``: ``onnxruntime.get_available_providers()``,
    which onnxruntime-gpu fills with its CUDA and TensorRT providers whether or not a GPU or the TensorRT
    libraries are there, so neither counts without ``cuda_available``, and TensorRT also needs
    ``tensorrt_libs``. ``backend``: ``RADCLIP_BACKEND``; with ``pytorch`` no ONNX session is built, so an
    explicit ``cuda`` does not need onnxruntime-gpu.
    """
    if requested not in ("cpu", "cuda", "auto"):
        raise ValueError(f"{DEVICE_ENV}={requested!r} is not one of cpu, cuda, auto")
    if requested == "cpu":
        return CPU_ONLY
    ort_cuda = CUDA_EP in ort_providers
    if not cuda_available:
        if requested == "cuda":
            raise RuntimeError(f"{DEVICE_ENV}=cuda but torch sees no CUDA device: {_FIX_TORCH} on a machine with an "
                               f"NVIDIA GPU and driver, or set {DEVICE_ENV}=cpu (or auto)")  # fmt: skip
        why = "no CUDA device visible to torch" + ("" if ort_cuda else ", no CUDA provider in onnxruntime")
        return Accelerator("cpu", (CPU_EP,), "float32", requested, f"auto: {why}; running on CPU")
    if not ort_cuda:
        if requested == "cuda" and backend != "pytorch":
            raise RuntimeError(f"{DEVICE_ENV}=cuda but onnxruntime has no {CUDA_EP} (CPU-only onnxruntime installed): "
                               f"{_FIX_ORT}, or set RADCLIP_BACKEND=pytorch, or {DEVICE_ENV}=auto to run the "
                               "ONNX sessions on CPU")  # fmt: skip
        return Accelerator("cuda", (CPU_EP,), "float32", requested,
                           f"{requested}: PyTorch on CUDA; ONNX sessions on CPU (onnxruntime has no CUDA provider: {_FIX_ORT})")  # fmt: skip
    trt = TENSORRT_EP in ort_providers and tensorrt_libs
    providers = ((TENSORRT_EP,) if trt else ()) + (CUDA_EP, CPU_EP)
    if trt:
        onnx = "TensorRT, then CUDA"
    else:
        onnx = "CUDA (TensorRT libraries not found)" if TENSORRT_EP in ort_providers else "CUDA"
    why = f"{requested}: CUDA device found; ONNX sessions on {onnx}, CPU for ops they lack"
    return Accelerator("cuda", providers, "float32", requested, why)


def _tensorrt_libs() -> bool:
    """Whether the dynamic loader finds the TensorRT runtime (libnvinfer), which the TensorRT provider loads."""
    return ctypes.util.find_library("nvinfer") is not None


def detect(requested: str, backend: str = "auto") -> Accelerator:
    """:func:`select_accelerator` on this machine; imports torch and onnxruntime only when asked (not for ``cpu``)."""
    if requested == "cpu":
        return CPU_ONLY
    try:
        import torch

        cuda = bool(torch.cuda.is_available())
    except ImportError:  # no torch: nothing here can tell whether a CUDA device exists
        cuda = False
    try:
        import onnxruntime as ort

        providers = list(ort.get_available_providers())
    except ImportError:
        providers = []
    return select_accelerator(requested, cuda_available=cuda, ort_providers=providers,
                              tensorrt_libs=cuda and _tensorrt_libs(), backend=backend)  # fmt: skip
