"""Deterministic fake encoders that count their calls (no model weights in engine tests)."""

from __future__ import annotations

import hashlib
import re

import numpy as np


def _token_vec(token: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


class HashingTextEmbedder:
    """Bag of words: each token adds a fixed pseudo-random vector; rows are L2-normalised."""

    def __init__(self, dim: int = 64, version: str = "fake-text@1") -> None:
        self.dim, self.version = dim, version
        self.calls = 0
        self.texts_encoded = 0

    def encode_text(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.texts_encoded += len(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for tok in re.findall(r"[a-z0-9]+", t.lower()):
                out[i] += _token_vec(tok, self.dim)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


class ProjectionImageEmbedder:
    """Mean-pools the contract tensor to 8x8 and projects it with a fixed random matrix."""

    def __init__(self, dim: int = 64, version: str = "fake-image@1") -> None:
        self.dim, self.version = dim, version
        self.calls = 0
        self.images_encoded = 0
        self._w = np.random.default_rng(11).standard_normal((64, dim)).astype(np.float32)

    def encode_images(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.images_encoded += len(batch)
        n, _, s, _ = batch.shape
        pooled = batch.reshape(n, 8, s // 8, 8, s // 8).mean(axis=(2, 4)).reshape(n, 64)
        out = (pooled - pooled.mean(axis=1, keepdims=True)) @ self._w
        return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)
