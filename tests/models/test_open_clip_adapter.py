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


def test_biomedclip_style_local_dir_loads_offline_without_config_edits(tmp_path, monkeypatch) -> None:
    """A BiomedCLIP-layout folder (timm ViT + Hugging Face BERT text tower named by hub id) loads offline.

    The folder is what a user copies from the hub: ``open_clip_config.json`` naming the text model
    by hub id, and the CLIP weights. ``text_model_dir`` holds the BERT config and tokenizer; the
    loaded adapter must reproduce the original model's image and text embeddings exactly.
    """
    import json
    import shutil

    transformers = pytest.importorskip("transformers")
    from radclip.models.open_clip_adapter import load_open_clip
    from radclip.models.text_encoder import minilm_path
    from radclip.models.weights import save_state_dict

    bert = tmp_path / "pubmedbert-local"
    transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64).save_pretrained(bert)  # fmt: skip
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_path() / name, bert / name)  # a real uncased BERT WordPiece tokenizer, offline
    hub_id = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"
    model_cfg = {
        "embed_dim": 24,
        "vision_cfg": {"timm_model_name": "vit_tiny_patch16_224", "timm_model_pretrained": False, "timm_pool": "",
                       "timm_proj": "linear", "image_size": 224},
        "text_cfg": {"hf_model_name": hub_id, "hf_tokenizer_name": hub_id, "hf_proj_type": "mlp",
                     "hf_pooler_type": "cls_last_hidden_state_pooler", "context_length": 32},
    }  # fmt: skip
    torch.manual_seed(0)
    local_text = {**model_cfg["text_cfg"], "hf_model_name": str(bert), "hf_tokenizer_name": str(bert), "hf_model_pretrained": False}
    ref = open_clip.model.CustomTextCLIP(**{**model_cfg, "text_cfg": local_text}).eval()
    folder = tmp_path / "biomedclip-copy"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {
        "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}}))  # fmt: skip
    save_state_dict(ref.state_dict(), folder / "open_clip_model.safetensors")

    ours = load_open_clip(f"local-dir:{folder}", text_model_dir=bert)
    assert ours.preprocessing.input_size == 224 and ours.preprocessing.in_chans == 3
    x = torch.rand(2, 1, 224, 224)
    mean = torch.tensor(ours.preprocessing.mean).view(1, 3, 1, 1)
    std = torch.tensor(ours.preprocessing.std).view(1, 3, 1, 1)
    texts = ["small left pleural effusion", "no acute cardiopulmonary abnormality"]
    tokenizer = open_clip.tokenizer.HFTokenizer(str(bert), context_length=32)
    with torch.no_grad():
        want_img = F.normalize(ref.encode_image((x.repeat(1, 3, 1, 1) - mean) / std), dim=-1)
        want_txt = F.normalize(ref.encode_text(tokenizer(texts)), dim=-1)
        got_img, got_txt = ours.encode_image(x), ours.encode_text(texts)
    assert torch.allclose(got_img, want_img, atol=1e-6) and torch.allclose(got_txt, want_txt, atol=1e-6)
    # without text_model_dir the text tower is looked up by hub id: a download, made to fail here whatever the network
    from open_clip import hf_model

    asked: list[str] = []

    def no_download(name: str, *args: object, **kwargs: object) -> None:
        asked.append(name)
        raise OSError(f"download of {name} refused by the test")

    monkeypatch.setattr(hf_model.AutoConfig, "from_pretrained", no_download)
    with pytest.raises(OSError, match="refused by the test"):
        load_open_clip(f"local-dir:{folder}")
    assert asked == [hub_id]
    with pytest.raises(ValueError, match="local-dir"):
        load_open_clip("ViT-B-32", text_model_dir=bert)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_open_clip(f"local-dir:{folder}", text_model_dir=tmp_path)
