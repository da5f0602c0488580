"""Gradient caching gives the same parameter gradients as one big-batch step."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from radclip.train.gradcache import full_backward, gradcache_backward
from radclip.train.losses import clip_loss


class _Towers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.img = nn.Sequential(nn.Linear(12, 16), nn.GELU(), nn.Dropout(0.2), nn.Linear(16, 8))
        self.txt = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 8))
        self.logit_scale = nn.Parameter(torch.tensor(2.0))


def _grads(chunk: int | None) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = _Towers()
    x_img, x_txt = torch.randn(10, 12), torch.randn(10, 10)

    def enc_img(a: int, b: int) -> torch.Tensor:
        return F.normalize(model.img(x_img[a:b]), dim=-1)

    def enc_txt(a: int, b: int) -> torch.Tensor:
        return F.normalize(model.txt(x_txt[a:b]), dim=-1)

    def loss_fn(i: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = clip_loss(i, t, model.logit_scale.exp())
        return {"loss": terms["contrastive"]}

    torch.manual_seed(123)  # same dropout masks in both runs
    if chunk is None:
        terms = full_backward(enc_img, enc_txt, 10, 10, loss_fn)
    else:
        terms = gradcache_backward(enc_img, enc_txt, 10, 10, loss_fn, chunk)
    out = {n: p.grad.clone() for n, p in model.named_parameters()}
    out["_loss"] = terms["loss"]
    return out


def test_gradcache_equals_big_batch() -> None:
    full = _grads(None)
    for chunk in (3, 4, 10):
        cached = _grads(chunk)
        for name, g in full.items():
            assert torch.allclose(cached[name], g, atol=1e-6), (chunk, name)
    assert full["logit_scale"].abs() > 0  # the loss touches the temperature directly


def test_gradcache_rejects_bad_chunk() -> None:
    import pytest

    with pytest.raises(ValueError, match="chunk size"):
        gradcache_backward(
            lambda a, b: torch.zeros(b - a, 2),
            lambda a, b: torch.zeros(b - a, 2),
            2,
            2,
            lambda i, t: {"loss": i.sum()},
            0,
        )
