"""Class activation maps (Zhou et al. 2016) from one forward pass.

For a GAP + linear head, ``logit_k = mean_hw(sum_c w_kc * F_c(h, w)) + b_k``; the CAM of class
``k`` is the same linear layer applied at every spatial position *before* pooling:
``CAM_k(h, w) = sum_c w_kc * F_c(h, w) + b_k``. Its spatial mean is exactly ``logit_k``, which
the tests use. The features come from ``TriageNet.predict`` (no second pass, no hooks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def class_activation_maps(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, class_indices: Sequence[int] | None = None) -> torch.Tensor:
    """CAMs ``(B, K, h, w)`` of ``class_indices`` (all classes when None) from features ``(B, C, h, w)``.

    ``weight`` is the classifier's ``(num_classes, C)`` matrix and ``bias`` its ``(num_classes,)`` vector.
    """
    import torch

    if features.ndim != 4:
        raise ValueError(f"features must be (B, C, h, w), got {tuple(features.shape)}; pass TriageOutput.features")
    if weight.ndim != 2 or weight.shape[1] != features.shape[1]:
        raise ValueError(f"classifier weight {tuple(weight.shape)} does not match {features.shape[1]} feature channels")
    idx = torch.as_tensor(list(range(weight.shape[0])) if class_indices is None else list(class_indices), dtype=torch.long, device=weight.device)
    w = weight.index_select(0, idx).to(features.dtype)
    cams = torch.einsum("bchw,kc->bkhw", features, w)
    if bias is not None:
        cams = cams + bias.index_select(0, idx).to(features.dtype).view(1, -1, 1, 1)
    return cams


def upsample_maps(cams: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear (half-pixel centres) resize of ``(B, K, h, w)`` maps to the input size."""
    import torch.nn.functional as F

    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(cams.shape[-2:]) == size:
        return cams
    return F.interpolate(cams, size=size, mode="bilinear", align_corners=False)


def normalize_maps(cams: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Min-max normalise each ``(h, w)`` map to [0, 1] (a constant or 1x1 map becomes all zeros, not NaN)."""
    lo = cams.amin(dim=(-2, -1), keepdim=True)
    hi = cams.amax(dim=(-2, -1), keepdim=True)
    return (cams - lo) / (hi - lo).clamp_min(eps)
