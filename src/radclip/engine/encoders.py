"""What the engine needs from a model: two small Protocols, and the one bridge to ``radclip.models``.

The engine never imports model code at import time. The service (or the CLI) wraps the
real image-text model in these Protocols and hands them in; tests pass a fake.
:func:`default_text_embedder` is the single place that reaches into ``radclip.models``,
and only when called.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TextEmbedder(Protocol):
    version: str  # text-model version string; cache keys and embedding rows carry it
    dim: int  # embedding width (512 for the shipped model)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """(N, dim) float32, each row L2-normalised."""
        ...


@runtime_checkable
class ImageEmbedder(Protocol):
    version: str  # image-model version string; index keys carry it
    dim: int

    def encode_images(self, batch: np.ndarray) -> np.ndarray:
        """(N, 1, S, S) contract tensors -> (N, dim) float32, each row L2-normalised."""
        ...


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)).astype(np.float32)


class _ClipTextEmbedder:
    """Adapts the shipped image-text model (``model.encode_text(list[str], normalize=True)``)."""

    def __init__(self, model: Any, version: str, dim: int) -> None:
        self._model = model
        self.version = version
        self.dim = dim

    def encode_text(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self._model.encode_text(list(texts), normalize=True)
        return l2_normalise(out.detach().cpu().float().numpy())


class _ClipImageEmbedder:
    """Adapts the shipped image-text model's ``encode_image`` to contract tensors."""

    def __init__(self, model: Any, version: str, dim: int, input_size: int = 224) -> None:
        self._model = model
        self.version = version
        self.dim = dim
        self.input_size = input_size  # contract tensor side S the model expects

    def encode_images(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self._model.encode_image(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)), normalize=True)
        return l2_normalise(out.detach().cpu().float().numpy())


def _load_clip(model_name: str | None) -> tuple[Any, str, int, int]:
    from radclip.models.registry import load_pretrained  # the bridge: imported at call time only
    from radclip.settings import get_settings

    name = model_name or get_settings().clip_model
    model, card = load_pretrained(name)
    model.eval()
    version = str(getattr(card, "version", None) or getattr(card, "sha256", None) or name)
    version = f"{getattr(card, 'name', name)}@{version}"
    dim = int(getattr(model, "embed_dim", None) or getattr(model, "output_dim", None) or 512)
    size = int(getattr(getattr(card, "preprocessing", None), "input_size", 224) or 224)
    return model, version, dim, size


def _load_clip_for(purpose: str, model_name: str | None) -> tuple[Any, str, int, int]:
    try:
        return _load_clip(model_name)
    except (ImportError, KeyError, OSError, ValueError, RuntimeError) as exc:
        raise RuntimeError(
            f"could not load the image-text model for {purpose} ({exc}); "
            "check RADCLIP_CLIP_MODEL names a shipped model or a .safetensors path"
        ) from exc


def default_text_embedder(model_name: str | None = None) -> TextEmbedder:
    """Build the real text embedder from the shipped image-text model (settings' ``clip_model``).

    This is the documented bridge from engine to models: it imports ``radclip.models`` when
    called, never at import. Raises ``RuntimeError`` with the fix when the model can't load.
    """
    model, version, dim, _ = _load_clip_for("text embeddings", model_name)
    return _ClipTextEmbedder(model, version, dim)


def default_image_embedder(model_name: str | None = None) -> ImageEmbedder:
    """Like :func:`default_text_embedder`, for images (same bridge, same model)."""
    model, version, dim, size = _load_clip_for("image embeddings", model_name)
    return _ClipImageEmbedder(model, version, dim, size)
