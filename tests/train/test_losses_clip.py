"""Contrastive losses: parity with open_clip, hand-computed cases, and the MedCLIP reduction to InfoNCE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from radclip.train.losses import clip_loss, label_similarity, label_vectors, semantic_matching_loss


def test_clip_loss_matches_open_clip() -> None:
    open_clip_loss = pytest.importorskip("open_clip.loss")
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(8, 16, generator=g), dim=-1)
    txt = F.normalize(torch.randn(8, 16, generator=g), dim=-1)
    scale = torch.tensor(14.3)
    ref = open_clip_loss.ClipLoss()(img, txt, scale)
    ours = clip_loss(img, txt, scale)["contrastive"]
    assert torch.allclose(ours, ref, atol=1e-6)


def test_clip_loss_hand_computed_3x3() -> None:
    # Orthonormal embeddings with one mismatch: img = e0, e1, e2; txt = e0, e1, e0; scale = 1.
    img = torch.eye(3)
    txt = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 0, 0]])
    # logits = img @ txt.T = [[1,0,1],[0,1,0],[0,0,0]]
    # i2t: row0 -log(e/(2e+1)) = 0.86199, row1 -log(e/(e+2)) = 0.55144, row2 -log(1/3) = 1.09861 -> mean 0.83735
    # t2i (columns of logits): col0 [1,0,0] target 0 -> 0.55144; col1 [0,1,0] target 1 -> 0.55144;
    #      col2 [1,0,0] target 2 -> -log(1/(e+2)) = 1.55144 -> mean 0.88478
    i2t = (-math.log(math.e / (2 * math.e + 1)) - math.log(math.e / (math.e + 2)) + math.log(3)) / 3
    t2i = (2 * -math.log(math.e / (math.e + 2)) + math.log(math.e + 2)) / 3
    terms = clip_loss(img, txt, 1.0)
    assert abs(i2t - 0.83735) < 1e-4 and abs(t2i - 0.88478) < 1e-4
    assert terms["i2t"].item() == pytest.approx(i2t, abs=1e-5)
    assert terms["t2i"].item() == pytest.approx(t2i, abs=1e-5)
    assert terms["contrastive"].item() == pytest.approx(0.5 * (i2t + t2i), abs=1e-5)


def test_label_vectors_uncertain_and_unknown() -> None:
    lab = torch.tensor([[1.0, -1.0, 0.0, float("nan")]])
    assert label_vectors(lab).tolist() == [[1.0, 0.5, 0.0, 0.0]]
    # a row with nothing known is similar to nothing (0), not NaN
    sim = label_similarity(torch.tensor([[float("nan"), 0.0]]), torch.tensor([[1.0, 0.0]]))
    assert sim.item() == 0.0


def test_semantic_matching_hand_computed_2x2() -> None:
    # images e0, e1; texts e0, e1; scale 1 -> logits = I. Labels: img0=[1,0], img1=[1,1], txt0=[1,0], txt1=[0,1].
    img = torch.eye(2)
    txt = torch.eye(2)
    il = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    tl = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    c = 1 / math.sqrt(2)
    tau = 0.5
    # label cosine s = [[1, 0], [c, c]]
    # i2t targets: row0 softmax([2, 0]) = [e^2/(e^2+1), 1/(e^2+1)]; row1 uniform [.5, .5]
    # log_softmax of logits rows: [1,0] -> [-log(1+1/e)... ] write out: lp_hit = -log(1+e^-1), lp_miss = -log(1+e)
    lp_hit, lp_miss = -math.log(1 + math.exp(-1)), -math.log(1 + math.e)
    p0 = math.exp(2) / (math.exp(2) + 1)
    i2t = (-(p0 * lp_hit + (1 - p0) * lp_miss) - (0.5 * lp_hit + 0.5 * lp_miss)) / 2
    # t2i targets: s.T = [[1, c], [0, c]]; row0 softmax([1/tau, c/tau]); row1 softmax([0, c/tau])
    q0 = math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(c / tau))
    q1 = 1 / (1 + math.exp(c / tau))
    t2i = (-(q0 * lp_hit + (1 - q0) * lp_miss) - (q1 * lp_miss + (1 - q1) * lp_hit)) / 2
    terms = semantic_matching_loss(img, txt, 1.0, il, tl, label_temperature=tau)
    assert terms["i2t"].item() == pytest.approx(i2t, abs=1e-5)
    assert terms["t2i"].item() == pytest.approx(t2i, abs=1e-5)
    assert terms["semantic"].item() == pytest.approx(0.5 * (i2t + t2i), abs=1e-5)


def test_semantic_matching_reduces_to_infonce_with_one_hot_labels() -> None:
    g = torch.Generator().manual_seed(1)
    img = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    txt = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    labels = torch.eye(6)  # each matched pair has its own one-hot label
    sm = semantic_matching_loss(img, txt, 10.0, labels, labels, label_temperature=0.01)["semantic"]
    ref = clip_loss(img, txt, 10.0)["contrastive"]
    assert torch.allclose(sm, ref, atol=1e-5)
    # with a warm label temperature the targets are soft and the loss differs
    soft = semantic_matching_loss(img, txt, 10.0, labels, labels, label_temperature=1.0)["semantic"]
    assert not torch.allclose(soft, ref, atol=1e-2)


def test_semantic_matching_gradients_flow_to_both_towers() -> None:
    img = F.normalize(torch.randn(4, 8), dim=-1).requires_grad_(True)
    txt = F.normalize(torch.randn(5, 8), dim=-1).requires_grad_(True)
    lab_i, lab_t = torch.rand(4, 15).round(), torch.rand(5, 15).round()
    semantic_matching_loss(img, txt, 5.0, lab_i, lab_t)["semantic"].backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert txt.grad is not None and txt.grad.abs().sum() > 0
