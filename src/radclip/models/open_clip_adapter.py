"""Real pretrained CLIPs through ``open_clip``, behind the same surface as :class:`~radclip.models.clip.MedClip`.

* OpenAI ViT-B/32: ``load_open_clip("ViT-B-32", weights="path/to/weights.safetensors")``
  (a state dict saved from ``open_clip.create_model("ViT-B-32", pretrained="openai")``).
* BiomedCLIP: ``load_open_clip("hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224")``
  (network, only when asked) or, offline, ``load_open_clip("local-dir:/path", text_model_dir="/bert")``
  for a copy of the hub repo (``open_clip_config.json`` + weights). Its config names its text tower
  by hub id (PubMedBERT), which transformers then fetches even offline; ``text_model_dir`` points
  that name (and the tokenizer) at a local folder holding the text model's ``config.json`` and
  tokenizer files, so no one has to edit the downloaded config.

Nothing is downloaded unless a ``hf-hub:`` name or a pretrained tag is passed explicitly, and
``open_clip`` is imported only inside the functions. The adapter takes the **contract tensor**
``(B, 1, S, S)`` in [0, 1]: the grey channel is repeated to RGB and normalised with the model's
own mean/std (its ``preprocess_cfg``); ``S`` must equal the model's image size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from radclip.models.card import Preprocessing
from radclip.models.registry import register_architecture

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class OpenClipAdapter(nn.Module):
    """``encode_image`` / ``encode_text`` / ``scale`` over an open_clip model and its tokenizer."""

    def __init__(self, model: nn.Module, tokenizer: Any) -> None:
        super().__init__()
        self.model = model
        self._tokenizer = tokenizer
        cfg = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
        size = cfg.get("size", getattr(model.visual, "image_size", 224))
        size = size[0] if isinstance(size, tuple | list) else size
        self.preprocessing = Preprocessing(
            input_size=int(size),
            scale="imagenet",
            in_chans=3,
            mean=tuple(cfg.get("mean", OPENAI_MEAN)),
            std=tuple(cfg.get("std", OPENAI_STD)),
        )
        proj = getattr(model, "text_projection", None)
        self.embed_dim = (
            int(proj.shape[-1]) if isinstance(proj, torch.Tensor) else int(getattr(model, "embed_dim", 512))
        )

    def encode_image(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        from radclip.models.preprocess import to_model_input

        device = next(self.model.parameters()).device
        out = self.model.encode_image(to_model_input(x, self.preprocessing).to(device))
        return F.normalize(out, dim=-1) if normalize else out

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self._tokenizer(list(texts))

    def encode_text(self, texts: list[str] | torch.Tensor, normalize: bool = True) -> torch.Tensor:
        tokens = self.tokenize(texts) if isinstance(texts, list | tuple) else texts
        out = self.model.encode_text(tokens.to(next(self.model.parameters()).device))
        return F.normalize(out, dim=-1) if normalize else out

    def scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp().clamp(max=100.0)


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    from radclip.models.weights import load_state_dict, load_torch_checkpoint

    if not path.is_file():
        raise FileNotFoundError(
            f"open_clip weights {path} do not exist; pass a .safetensors/.pt state dict saved from open_clip"
        )
    return load_state_dict(path) if path.suffix == ".safetensors" else load_torch_checkpoint(path)


def _local_text_cfg(model_name: str, text_model_dir: Path) -> dict[str, Any]:
    """The ``local-dir:`` model's ``text_cfg`` with its Hugging Face names pointed at ``text_model_dir``."""
    import json

    folder = Path(model_name.removeprefix("local-dir:"))
    config = folder / "open_clip_config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{config} is missing; a local-dir: model folder holds open_clip_config.json and the weights")
    text_cfg = dict(json.loads(config.read_text())["model_cfg"].get("text_cfg", {}))
    if "hf_model_name" not in text_cfg:
        raise ValueError(f"{config}: its text tower is not a Hugging Face model, so text_model_dir does not apply")
    if not (text_model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{text_model_dir / 'config.json'} is missing; text_model_dir must hold the text model's "
                                "Hugging Face config.json and tokenizer files (e.g. a snapshot of its hub repo)")  # fmt: skip
    # The CLIP checkpoint carries the text weights: build the tower from its config, load nothing else.
    return text_cfg | {"hf_model_name": str(text_model_dir), "hf_tokenizer_name": str(text_model_dir), "hf_model_pretrained": False}


def load_open_clip(
    model_name: str, weights: str | Path | None = None, pretrained: str | None = None,
    text_model_dir: str | Path | None = None,
) -> OpenClipAdapter:  # fmt: skip
    """Build ``model_name`` with open_clip and wrap it.

    ``weights``: a local state-dict file (offline). ``pretrained``: an open_clip tag such as
    ``"openai"`` (downloads; only when you pass it). ``hf-hub:``/``local-dir:`` names carry their weights.
    ``text_model_dir`` (``local-dir:`` models with a Hugging Face text tower, e.g. BiomedCLIP): a local
    folder with that text model's ``config.json`` and tokenizer, used instead of its hub id.
    """
    try:
        import open_clip
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "the open_clip adapter needs 'open_clip_torch' (pip install open_clip_torch)"
        ) from exc
    state = _read_state(Path(weights)) if weights is not None else None  # fail on a bad path before building
    overrides: dict[str, Any] = {}
    if text_model_dir is not None:
        if not model_name.startswith("local-dir:"):
            raise ValueError(f"text_model_dir applies to 'local-dir:' models only, not {model_name!r}")
        overrides["text_cfg"] = _local_text_cfg(model_name, Path(text_model_dir))
    model = open_clip.create_model(model_name, pretrained=pretrained, **overrides)
    if state is not None:
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"weights {weights} do not fit open_clip {model_name!r}: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
    model.eval()
    if text_model_dir is not None:
        from open_clip.tokenizer import HFTokenizer

        cfg = overrides["text_cfg"]
        tokenizer = HFTokenizer(str(text_model_dir), context_length=int(cfg.get("context_length", 77)),
                                tokenizer_mode=cfg.get("tokenizer_mode"), **cfg.get("tokenizer_kwargs", {}))  # fmt: skip
    else:
        tokenizer = open_clip.get_tokenizer(model_name)
    return OpenClipAdapter(model, tokenizer)


@register_architecture("open_clip")
def open_clip_model(model_name: str = "ViT-B-32", **_: Any) -> OpenClipAdapter:
    """Registry entry: an empty open_clip model (weights come from the card's file, keys ``model.*``)."""
    return load_open_clip(model_name)
