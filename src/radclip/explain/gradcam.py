"""Explainers over one base class (pytorch-grad-cam's shape, our code).

:class:`BaseCAM` fixes the algorithm: features -> per-channel weights -> weighted sum -> optional
ReLU -> upsample -> normalise. :class:`CAM` and :class:`GradCAM` only override ``channel_weights``.
A *target* is a small callable mapping logits ``(B, K)`` to one score per image ``(B,)``.

Models with ``forward_features``/``forward_head`` (every radclip triage net) are explained without
hooks: Grad-CAM differentiates the head with respect to a detached copy of the feature map, so the
shared model's parameters get no ``.grad`` and its ``.training`` flag is never touched. Other models
can name a ``target_layer``; its activations are captured by a hook that :func:`capture_layer`
removes on exit, even on error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from radclip.explain.cam import normalize_maps, upsample_maps

Target = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ClassTarget:
    """Score of one output class: ``logits[:, index]``."""

    index: int

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, self.index]


@contextmanager
def capture_layer(layer: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Record ``layer``'s output (with its gradient retained) while inside the block; the hook is always removed."""
    store: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        if out.requires_grad:
            out.retain_grad()
        store["activations"] = out

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


class BaseCAM:
    """Explain ``model`` on input ``x`` for ``targets``; subclasses define ``channel_weights``."""

    needs_grad = False  # whether channel_weights differentiates the targets
    apply_relu = False  # Grad-CAM keeps positive evidence only

    def __init__(self, model: nn.Module, target_layer: nn.Module | None = None) -> None:
        self.model = model
        self.target_layer = target_layer
        if target_layer is None and not hasattr(model, "forward_features"):
            raise ValueError(f"{type(model).__name__} has no forward_features; pass target_layer= (the last conv block)")

    def channel_weights(self, features: torch.Tensor, logits: torch.Tensor, targets: Sequence[Target]) -> torch.Tensor:
        """``(B, K, C)`` weights of the feature channels, one row per target."""
        raise NotImplementedError

    def bias(self, targets: Sequence[Target]) -> torch.Tensor | None:
        return None

    def _features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.target_layer is None:
            with torch.no_grad():
                feats = self.model.forward_features(x)  # type: ignore[operator]
            feats = feats.detach().clone().requires_grad_(self.needs_grad)
            with torch.set_grad_enabled(self.needs_grad):
                return feats, self.model.forward_head(feats)  # type: ignore[operator]
        with capture_layer(self.target_layer) as store, torch.set_grad_enabled(self.needs_grad):
            x = x.detach().clone().requires_grad_(self.needs_grad)
            logits = self.model(x)
        return store["activations"], logits

    def __call__(self, x: torch.Tensor, targets: Sequence[Target] | Sequence[int], size: int | tuple[int, int] | None = None, normalize: bool = True) -> torch.Tensor:
        """Maps ``(B, K, H, W)`` for the K targets, at the input's size unless ``size`` says otherwise."""
        targets = [ClassTarget(t) if isinstance(t, int) else t for t in targets]
        feats, logits = self._features_and_logits(x)
        weights = self.channel_weights(feats, logits, targets).to(feats.dtype)
        cams = torch.einsum("bchw,bkc->bkhw", feats.detach(), weights)
        bias = self.bias(targets)
        if bias is not None:
            cams = cams + bias.view(1, -1, 1, 1).to(cams.dtype)
        if self.apply_relu:
            cams = torch.relu(cams)
        cams = upsample_maps(cams, size if size is not None else tuple(x.shape[-2:]))
        return normalize_maps(cams) if normalize else cams


class CAM(BaseCAM):
    """Classic CAM: the classifier's own weights (targets must be :class:`ClassTarget`)."""

    def _head(self) -> nn.Linear:
        head = getattr(self.model, "classifier", None)
        if not isinstance(head, nn.Linear):
            raise ValueError("CAM needs a GAP + linear head named 'classifier'; use GradCAM for other heads")
        return head

    def channel_weights(self, features: torch.Tensor, logits: torch.Tensor, targets: Sequence[Target]) -> torch.Tensor:
        idx = [_class_index(t) for t in targets]
        w = self._head().weight.detach()[idx]
        return w.unsqueeze(0).expand(features.shape[0], -1, -1)

    def bias(self, targets: Sequence[Target]) -> torch.Tensor | None:
        b = self._head().bias
        return None if b is None else b.detach()[[_class_index(t) for t in targets]]


class GradCAM(BaseCAM):
    """Grad-CAM (Selvaraju et al.): channel weight = spatial mean of d target / d features; ReLU on the map."""

    needs_grad = True
    apply_relu = True

    def channel_weights(self, features: torch.Tensor, logits: torch.Tensor, targets: Sequence[Target]) -> torch.Tensor:
        rows = []
        for i, target in enumerate(targets):
            (grad,) = torch.autograd.grad(target(logits).sum(), features, retain_graph=i < len(targets) - 1)
            rows.append(grad.mean(dim=(2, 3)))
        return torch.stack(rows, dim=1)


def _class_index(target: Target) -> int:
    if not isinstance(target, ClassTarget):
        raise TypeError(f"CAM explains class logits only; got target {target!r}; use ClassTarget(k) or GradCAM")
    return target.index
