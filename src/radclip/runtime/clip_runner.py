"""Serving wrapper around the one shared image–text model.

It satisfies both engine protocols (:class:`~radclip.engine.encoders.TextEmbedder` and
:class:`~radclip.engine.encoders.ImageEmbedder`), so the registry, the screener, the index and
the retriever all use the same loaded instance.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np


class ClipRunner:
    backend = "pytorch"

    def __init__(self, model: Any, card: Any, device: str = "cpu") -> None:
        # fp32 on either device: fp16 on CUDA is not enabled (its parity was never checked on a GPU; runtime/accelerator.py)
        self.device = device  # torch device, chosen once at start; the model moves its inputs to it
        self.model = (model.to(device) if device != "cpu" else model).eval()
        self.card = card
        self.dim = int(model.embed_dim)
        self.version = f"{card.name}@{card.version}"
        self._lock = threading.Lock()  # tokenizers are not guaranteed re-entrant; encoding is short

    @classmethod
    def load(cls, name_or_path: str, device: str = "cpu") -> ClipRunner:
        from radclip.models.registry import load_pretrained

        model, card = load_pretrained(name_or_path)
        return cls(model, card, device)

    @property
    def input_size(self) -> int:
        return int(self.model.preprocessing.input_size)

    def version_info(self) -> dict[str, Any]:
        return {"name": self.card.name, "version": self.card.version, "sha256": self.card.weights_sha256, "backend": self.backend}

    def encode_text(self, texts: list[str]) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._lock, torch.inference_mode():
            out = self.model.encode_text(list(texts), normalize=True)
        return out.float().cpu().numpy()

    def encode_images(self, batch: np.ndarray) -> np.ndarray:
        """(N, 1, S, S) contract tensors -> (N, dim) L2-normalised embeddings."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        with torch.inference_mode():
            out = self.model.encode_image(x, normalize=True)
        return out.float().cpu().numpy()
