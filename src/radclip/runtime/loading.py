"""Choose the backend for each configured model: ONNX Runtime when a verified export exists, else PyTorch.

One place for the rule, so the HTTP service and the PACS pipeline serve the same artefacts the
same way (``RADCLIP_BACKEND``: ``auto`` | ``pytorch`` | ``onnxruntime``), on the device and execution
providers that :mod:`radclip.runtime.accelerator` selects for ``RADCLIP_DEVICE`` (once, at start).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from radclip.runtime.accelerator import Accelerator, detect


def side_by_side_threads(settings: Any) -> int:
    """Intra-op threads of the triage and image sessions, which /screen runs at the same time.

    ``RADCLIP_TORCH_THREADS`` when set; otherwise half the cores each, so the two sessions do not
    oversubscribe the machine (2 cores: 1 thread each, both graphs in 4.1 ms, against 5.3 ms with
    2 threads each; docs/performance.md).
    """
    return int(settings.torch_threads) or max(1, (os.cpu_count() or 2) // 2)


def accelerator_for(settings: Any) -> Accelerator:
    """The device and ONNX Runtime providers for ``RADCLIP_DEVICE`` on this machine (raises when ``cuda`` cannot be met)."""
    return detect(str(getattr(settings, "device", "auto")), backend=str(getattr(settings, "backend", "auto")))


def exports_for(settings: Any, name: str) -> tuple[Any, dict[str, Path]]:
    """The model's card and its verified ONNX exports (empty unless the backend allows ONNX)."""
    from radclip.models.registry import find_card
    from radclip.runtime.onnx_backend import find_exports

    card, _ = find_card(name)
    if settings.backend == "pytorch":
        return card, {}
    exports = find_exports(settings.resolved_export_dir, card)
    if settings.backend == "onnxruntime" and not exports:
        raise RuntimeError(f"RADCLIP_BACKEND=onnxruntime but no ONNX export of {card.name} in {settings.resolved_export_dir}; "
                           "run `radclip export onnx` first")  # fmt: skip
    return card, exports


def load_triage_runner(settings: Any, accel: Accelerator | None = None) -> Any:
    """A :class:`~radclip.runtime.triage_runner.TriageRunner` (or its ONNX Runtime subclass) for ``RADCLIP_TRIAGE_MODEL``.

    ``accel``: the start-up selection (:func:`accelerator_for` when not given).
    """
    from radclip.runtime.triage_runner import TriageRunner

    accel = accel or accelerator_for(settings)
    card, exports = exports_for(settings, settings.triage_model)
    if "triage" in exports:
        from radclip.runtime.onnx_backend import OnnxTriageRunner

        threads = side_by_side_threads(settings)
        return OnnxTriageRunner(card, exports["triage"], threads=threads, providers=accel.onnx_providers)
    return TriageRunner.load(settings.triage_model, device=accel.device)


def load_screen_runner(settings: Any, triage: Any, clip: Any, accel: Accelerator | None = None) -> Any | None:
    """The fused triage + image-embedding graph when both models run on ONNX Runtime and a verified one exists."""
    if getattr(triage, "backend", "") != "onnxruntime" or getattr(clip, "backend", "") != "onnxruntime":
        return None
    if getattr(clip, "precision", "fp32") != "fp32":  # the fused graph is fp32: it would not match an int8 index
        return None
    from radclip.runtime.onnx_backend import OnnxScreenRunner, find_exports

    found = find_exports(settings.resolved_export_dir, triage.card, partner=clip.card).get("screen")
    if found is None:
        return None
    providers = (accel or accelerator_for(settings)).onnx_providers
    return OnnxScreenRunner(triage, found, threads=settings.torch_threads, providers=providers)


def load_clip_runner(settings: Any, accel: Accelerator | None = None) -> Any:
    """A ``ClipRunner`` or ``OnnxClipRunner`` (same interface) for ``RADCLIP_CLIP_MODEL``, on ``accel`` like the triage runner."""
    from radclip.runtime.clip_runner import ClipRunner

    accel = accel or accelerator_for(settings)
    card, exports = exports_for(settings, settings.clip_model)
    if getattr(settings, "int8_image", False) and settings.backend == "pytorch":
        raise RuntimeError("RADCLIP_INT8_IMAGE=true needs ONNX Runtime, but RADCLIP_BACKEND=pytorch; set one or the other")
    if getattr(settings, "int8_image", False) and "clip-image-int8" not in exports:
        raise RuntimeError(f"RADCLIP_INT8_IMAGE=true but no int8 image tower of {card.name} in {settings.resolved_export_dir}; "
                           "run `radclip export onnx --int8-image` first, or unset it")  # fmt: skip
    if {"clip-image", "clip-text"} <= set(exports):
        from radclip.runtime.onnx_backend import OnnxClipRunner

        int8 = bool(getattr(settings, "int8_image", False))
        return OnnxClipRunner(card, exports["clip-image-int8" if int8 else "clip-image"], exports["clip-text"],
                              threads=settings.torch_threads, image_threads=side_by_side_threads(settings),
                              precision="int8" if int8 else "fp32", providers=accel.onnx_providers)  # fmt: skip
    return ClipRunner.load(settings.clip_model, device=accel.device)
