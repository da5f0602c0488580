"""The open_clip adapter reproduces open_clip's own embeddings from a saved state dict (offline)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

open_clip = pytest.importorskip("open_clip")


def test_vit_b32_state_dict_round_trip(tmp_path) -> None:
    from radclip.models.open_clip_adapter import load_open_clip
    from radclip.models.weights import save_state_dict

    torch.manual_seed(0)
    ref = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    path = tmp_path / "vitb32.safetensors"
    save_state_dict(ref.state_dict(), path)
    ours = load_open_clip("ViT-B-32", weights=path)
    assert ours.preprocessing.in_chans == 3 and ours.preprocessing.input_size == 224

    x = torch.rand(2, 1, 224, 224)
    mean = torch.tensor(ours.preprocessing.mean).view(1, 3, 1, 1)
    std = torch.tensor(ours.preprocessing.std).view(1, 3, 1, 1)
    texts = ["chest x-ray showing pleural effusion.", "a normal chest"]
    with torch.no_grad():
        want_img = F.normalize(ref.encode_image((x.repeat(1, 3, 1, 1) - mean) / std), dim=-1)
        want_txt = F.normalize(ref.encode_text(open_clip.get_tokenizer("ViT-B-32")(texts)), dim=-1)
        got_img = ours.encode_image(x)
        got_txt = ours.encode_text(texts)
    assert got_img.shape == (2, 512) and got_txt.shape == (2, 512)
    assert torch.allclose(got_img, want_img, atol=1e-5)
    assert torch.allclose(got_txt, want_txt, atol=1e-5)
    assert ours.scale().item() == pytest.approx(min(100.0, ref.logit_scale.exp().item()))


def test_missing_weights_file_is_explained(tmp_path) -> None:
    from radclip.models.open_clip_adapter import load_open_clip

    with pytest.raises(FileNotFoundError, match="do not exist"):
        load_open_clip("ViT-B-32", weights=tmp_path / "nope.safetensors")
