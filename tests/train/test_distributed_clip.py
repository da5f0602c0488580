"""All-gather with gradient, simulated as a two-rank world by replacing the collectives (as open_clip's tests do).

This checks the arithmetic around the collectives only; the collectives themselves (the gradient each
rank gets back) are checked for real in ``test_ddp_sgd_parity.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from radclip.train import distributed
from radclip.train.distributed import DistInfo, gather_features
from radclip.train.losses import clip_loss


class _FakeAllGather(torch.autograd.Function):
    """Two ranks: this rank's tensor at ``rank``, the other rank's (fixed) tensor beside it.

    The backward returns the gradient of this rank's slice, times the world size: every rank
    computes the same global loss, and the real all_gather's backward sums their gradients.
    """

    @staticmethod
    def forward(ctx, t: torch.Tensor, other: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        ctx.rank = rank
        parts = [t, other] if rank == 0 else [other, t]
        return parts[0].clone(), parts[1].clone()

    @staticmethod
    def backward(ctx, g0: torch.Tensor, g1: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        return 2 * (g0 if ctx.rank == 0 else g1), None, None


def test_gather_with_grad_two_ranks(monkeypatch) -> None:
    torch.manual_seed(0)
    img_all = F.normalize(torch.randn(8, 6), dim=-1)
    txt_all = F.normalize(torch.randn(8, 6), dim=-1)
    ref_img, ref_txt = img_all.clone().requires_grad_(True), txt_all.clone().requires_grad_(True)
    clip_loss(ref_img, ref_txt, 10.0)["contrastive"].backward()

    grads_img, grads_txt = [], []
    for rank in (0, 1):
        mine = slice(4 * rank, 4 * rank + 4)
        other = slice(4 * (1 - rank), 4 * (1 - rank) + 4)
        local_img = img_all[mine].clone().requires_grad_(True)
        local_txt = txt_all[mine].clone().requires_grad_(True)
        others = {"img": img_all[other], "txt": txt_all[other]}

        def fake(
            t: torch.Tensor, rank: int = rank, others: dict = others, li: torch.Tensor = local_img
        ) -> list[torch.Tensor]:
            return list(_FakeAllGather.apply(t, others["img"] if t is li else others["txt"], rank))

        monkeypatch.setattr(distributed, "_all_gather_with_grad", fake)
        g_img, g_txt = gather_features(local_img, local_txt, DistInfo(rank=rank, world_size=2))
        assert torch.equal(g_img, img_all) and torch.equal(g_txt, txt_all)  # rank order kept
        clip_loss(g_img, g_txt, 10.0)["contrastive"].backward()
        grads_img.append(local_img.grad / 2)  # the trainer averages gradients over ranks
        grads_txt.append(local_txt.grad / 2)
    assert torch.allclose(torch.cat(grads_img), ref_img.grad, atol=1e-6)
    assert torch.allclose(torch.cat(grads_txt), ref_txt.grad, atol=1e-6)


def test_gather_without_grad_keeps_local_graph(monkeypatch) -> None:
    img = torch.randn(3, 4, requires_grad=True)
    txt = torch.randn(3, 4, requires_grad=True)
    monkeypatch.setattr(distributed, "_all_gather_no_grad", lambda t, w: [t.detach(), t.detach() + 1.0])
    g_img, g_txt = gather_features(img, txt, DistInfo(rank=1, world_size=2), with_grad=False)
    assert g_img.shape == (6, 4)
    assert torch.equal(g_img[3:], img.detach())  # rank 1's slot holds the local tensor
    g_img[3:].sum().backward()
    assert img.grad is not None and torch.equal(img.grad, torch.ones_like(img))


def test_single_process_is_identity() -> None:
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    out = gather_features(a, b, DistInfo())
    assert out[0] is a and out[1] is b
