"""Contract tensor -> model input, driven by a card's :class:`~radclip.models.card.Preprocessing`.

The contract tensor is ``(1, S, S)`` or ``(B, 1, S, S)`` float32 in [0, 1] (see
:mod:`radclip.io.contract`). Two scalings exist:

* ``"imagenet"``: ``(x - mean) / std``; with ``in_chans == 3`` the grey channel is repeated and
  each channel uses its own mean/std; with ``in_chans == 1`` the single channel uses the mean of
  the card's means and stds (the grey equivalent, as timm does for 1-channel models).
* ``"xrv"``: ``x * 2048 - 1024`` (torchxrayvision's ``normalize(img, 255)`` on the 8-bit grid).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from radclip.io.contract import check_contract_tensor
from radclip.models.card import Preprocessing

if TYPE_CHECKING:
    import numpy as np
    import torch

SCALES = ("imagenet", "xrv")


def _channel_stats(pre: Preprocessing) -> tuple[list[float], list[float]]:
    mean, std = list(pre.mean), list(pre.std)
    if len(mean) == pre.in_chans:
        return mean, std
    if pre.in_chans == 1:
        return [sum(mean) / len(mean)], [sum(std) / len(std)]
    if len(mean) == 1:
        return mean * pre.in_chans, std * pre.in_chans
    raise ValueError(f"preprocessing has {len(mean)} means for in_chans={pre.in_chans}; give 1 or {pre.in_chans} values")


def to_model_input(x: torch.Tensor | np.ndarray, pre: Preprocessing) -> torch.Tensor:
    """Scale a contract tensor ``(1,S,S)`` or ``(B,1,S,S)`` into the model's input ``(B, in_chans, S, S)``."""
    import torch

    t = torch.as_tensor(x, dtype=torch.float32)
    check_contract_tensor(t, pre.input_size)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if pre.scale == "xrv":
        out = t * 2048.0 - 1024.0
        return out.repeat(1, pre.in_chans, 1, 1) if pre.in_chans != 1 else out
    if pre.scale != "imagenet":
        raise ValueError(f"unknown preprocessing scale {pre.scale!r}; use one of {SCALES}")
    mean, std = _channel_stats(pre)
    if pre.in_chans != 1:
        t = t.repeat(1, pre.in_chans, 1, 1)
    m = torch.tensor(mean, dtype=t.dtype, device=t.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=t.dtype, device=t.device).view(1, -1, 1, 1)
    return (t - m) / s


def image_to_model_input(pixels: np.ndarray, pre: Preprocessing) -> tuple[np.ndarray, torch.Tensor]:
    """Loader pixels (H, W) -> (contract array (1, S, S), model input (1, in_chans, S, S))."""
    from radclip.io.contract import to_contract_tensor

    contract = to_contract_tensor(pixels, pre.input_size)
    return contract, to_model_input(contract, pre)
