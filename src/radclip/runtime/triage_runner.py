"""Serving wrapper around the one shared triage model: scores and CAM from a single forward pass.

The model is loaded once and only ever used under ``predict`` (inference mode, eval mode,
no hooks), so one instance is shared by every request thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from radclip.io.labels import NIH_LABELS


@dataclass(frozen=True)
class TriageResult:
    labels: tuple[str, ...]
    logits: np.ndarray  # (K,)
    probs: np.ndarray  # (K,) calibrated (per-label temperature and intercept from the card)
    band_low: np.ndarray  # (K,) lower edge of the confidence band
    band_high: np.ndarray  # (K,)
    features: Any  # what cam() needs, kept from the one pass: torch features (1, C, h, w), or ONNX cams (1, K, h, w)
    inference_ms: float


def _per_label(card: Any, labels: tuple[str, ...], key: str, default: float) -> np.ndarray:
    values = (card.calibration or {}).get(key) or {}
    return np.array([float(values.get(name, default)) for name in labels], dtype=np.float64)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class TriageRunner:
    backend = "pytorch"

    def __init__(self, model: Any, card: Any, device: str = "cpu") -> None:
        # fp32 on either device: fp16 on CUDA is not enabled (its parity was never checked on a GPU; runtime/accelerator.py)
        self.device = device  # torch device, chosen once at start by runtime/accelerator.py
        self.model = model.to(device) if model is not None and device != "cpu" else model
        self.card = card
        self.labels = tuple(card.labels) if card.labels else NIH_LABELS
        # Calibrated p = sigmoid(logit / T + b) per label (b = 0 on temperature-only cards); see eval/calibration.py.
        self.temperature = _per_label(card, self.labels, "temperature", 1.0)
        self.bias = _per_label(card, self.labels, "bias", 0.0)
        # Validation support per probability bin: the band is the Wilson interval on that many cases.
        self.bin_counts = (card.calibration or {}).get("val_bin_counts")

    @classmethod
    def load(cls, name_or_path: str, device: str = "cpu") -> TriageRunner:
        from radclip.models.registry import load_pretrained

        model, card = load_pretrained(name_or_path)
        return cls(model, card, device)

    @property
    def input_size(self) -> int:
        return int(self.card.preprocessing.input_size)

    def version_info(self) -> dict[str, Any]:
        return {"name": self.card.name, "version": self.card.version, "sha256": self.card.weights_sha256, "backend": self.backend}

    def run(self, contract: np.ndarray) -> TriageResult:
        """Score one contract tensor ``(1, S, S)``; keeps the feature map for CAM."""
        from radclip.models.preprocess import to_model_input

        start = time.perf_counter()
        out = self.model.predict(to_model_input(contract, self.card.preprocessing).to(self.device))
        logits = out.logits[0].double().cpu().numpy()
        return self._result(logits, out.features, (time.perf_counter() - start) * 1000)

    def _result(self, logits: np.ndarray, features: Any, ms: float) -> TriageResult:
        """Calibrate (per-label temperature and intercept) and attach the band; ``features`` is whatever ``cam`` needs."""
        from radclip.models.confidence import confidence_band

        probs = sigmoid(logits / self.temperature + self.bias)
        bands = np.array([confidence_band(float(p), self.bin_counts) for p in probs], dtype=np.float64).reshape(-1, 2)
        return TriageResult(self.labels, logits, probs, bands[:, 0], bands[:, 1], features, ms)

    def label_index(self, label: str) -> int:
        lookup = {name.lower(): i for i, name in enumerate(self.labels)}
        key = label.strip().lower().replace(" ", "_")
        if key not in lookup:
            import difflib

            close = difflib.get_close_matches(key, list(lookup), n=1)
            hint = f"; did you mean {self.labels[lookup[close[0]]]!r}?" if close else ""
            raise KeyError(f"unknown finding {label!r}{hint} Known: {', '.join(self.labels)}")
        return lookup[key]

    def cam(self, result: TriageResult, label: str) -> np.ndarray:
        """Class activation map for ``label`` from the stored feature map, (S, S) in [0, 1]."""
        import torch

        from radclip.explain.cam import class_activation_maps, normalize_maps, upsample_maps

        idx = self.label_index(label)
        head = self.model.classifier
        with torch.inference_mode():
            cams = class_activation_maps(result.features, head.weight, head.bias, [idx])
            cams = normalize_maps(upsample_maps(cams, self.input_size))
        return cams[0, 0].float().cpu().numpy()
