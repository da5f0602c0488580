"""The two-tower image-text model (MedCLIP style), open_clip's surface.

``MedClip`` = image trunk + projection head, text trunk + projection head, both into
``embed_dim`` (512) and L2-normalised, and a learnable temperature ``logit_scale``
(initialised at ``log(1/0.07)``, used as ``exp(logit_scale)`` clamped to <= 100).

* ``encode_image(x, normalize=True)``: ``x`` is the **contract tensor** ``(B, 1, S, S)`` in [0, 1];
  the tower's own normalisation (the card's :class:`~radclip.models.card.Preprocessing`) is
  applied inside, so callers never scale pixels.
* ``encode_text(texts, normalize=True)``: a list of strings or an already tokenised dict.
* ``image_features`` / ``text_features`` return the trunk outputs before the heads, and
  ``project_image`` / ``project_text`` apply the heads: with frozen trunks the trainer caches
  the features once and trains the heads alone.

A frozen pretrained text trunk (MiniLM) is left out of ``state_dict()`` and is not expected by
``load_state_dict``: it is rebuilt from its package, and only our weights ship; its fine-tuned top
layers (``TextConfig.tuned_layers``) are the exception: they ship, and are required when loading.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from radclip.models.card import Preprocessing
from radclip.models.image_encoder import ImageTrunk, VisionConfig, preprocessing_for
from radclip.models.registry import register_architecture
from radclip.models.text_encoder import TextConfig, TextTrunk

MAX_LOGIT_SCALE = 100.0
_TEXT_WEIGHTS = "text.trunk.model."  # state-dict prefix of the pretrained text weights


@dataclass
class ClipConfig:
    """The whole model (stored as the card's ``config``)."""

    embed_dim: int = 512  # shared embedding width
    vision: VisionConfig = field(default_factory=VisionConfig)  # image tower
    text: TextConfig = field(default_factory=TextConfig)  # text tower
    head: str = "mlp"  # projection heads: "linear" | "mlp" (Linear-GELU-Linear)
    head_hidden: int = 1024  # mlp heads: hidden width
    head_dropout: float = 0.0  # mlp heads: dropout after the hidden activation (training only)
    init_temperature: float = 0.07  # logit_scale starts at log(1 / init_temperature)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClipConfig:
        data = dict(data)
        vision = VisionConfig(**data.pop("vision", {}))
        text = TextConfig(**data.pop("text", {}))
        return cls(vision=vision, text=text, **data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _head(n_in: int, cfg: ClipConfig) -> nn.Module:
    if cfg.head == "linear":
        return nn.Linear(n_in, cfg.embed_dim)
    if cfg.head == "mlp":
        return nn.Sequential(
            nn.Linear(n_in, cfg.head_hidden),
            nn.GELU(),
            nn.Dropout(cfg.head_dropout),
            nn.Linear(cfg.head_hidden, cfg.embed_dim),
        )
    raise ValueError(f"unknown projection head {cfg.head!r}; use 'linear' or 'mlp'")


class _Tower(nn.Module):
    def __init__(self, trunk: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head


class MedClip(nn.Module):
    """Image and text towers projected into one normalised space."""

    def __init__(self, cfg: ClipConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_dim = cfg.embed_dim
        img = ImageTrunk(cfg.vision)
        txt = TextTrunk(cfg.text)
        self.visual = _Tower(img, _head(img.num_features, cfg))
        self.text = _Tower(txt, _head(txt.num_features, cfg))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))
        self.preprocessing: Preprocessing = preprocessing_for(cfg.vision)
        self._register_state_dict_hook(_drop_frozen_text)

    # ----------------------------------------------------------------- image side
    def image_features(self, x: torch.Tensor) -> torch.Tensor:
        """Contract tensor ``(B, 1, S, S)`` (or ``(1, S, S)``) -> trunk features ``(B, F)``."""
        from radclip.models.preprocess import to_model_input

        return self.visual.trunk(to_model_input(x, self.preprocessing).to(self.logit_scale.device))

    def image_frozen_features(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the trunk's fixed blocks (cacheable); ``image_features = trunk.forward_trainable(this)``."""
        from radclip.models.preprocess import to_model_input

        return self.visual.trunk.forward_frozen(
            to_model_input(x, self.preprocessing).to(self.logit_scale.device)
        )

    def project_image(self, feats: torch.Tensor) -> torch.Tensor:
        return self.visual.head(feats)

    def encode_image(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        out = self.project_image(self.image_features(x))
        return F.normalize(out, dim=-1) if normalize else out

    # ----------------------------------------------------------------- text side
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.text.trunk.tokenize(list(texts))

    def text_features(self, texts: list[str] | dict[str, torch.Tensor]) -> torch.Tensor:
        tokens = self.tokenize(texts) if isinstance(texts, list | tuple) else texts
        device = self.logit_scale.device
        tokens = {k: v.to(device) for k, v in tokens.items()}
        if self.text.trunk.frozen:
            with torch.no_grad():
                return self.text.trunk(tokens)
        return self.text.trunk(tokens)

    def project_text(self, feats: torch.Tensor) -> torch.Tensor:
        return self.text.head(feats)

    def encode_text(self, texts: list[str] | dict[str, torch.Tensor], normalize: bool = True) -> torch.Tensor:
        out = self.project_text(self.text_features(texts))
        return F.normalize(out, dim=-1) if normalize else out

    # ----------------------------------------------------------------- both
    def scale(self) -> torch.Tensor:
        """``exp(logit_scale)``, clamped to at most 100 (CLIP's cap)."""
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def forward(
        self, images: torch.Tensor, texts: list[str] | dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.encode_image(images), self.encode_text(texts), self.scale()

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return self.state_dict()

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        """Like ``nn.Module.load_state_dict``; a frozen pretrained text trunk's keys are not expected."""
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        if not self.text.trunk.ships_weights:
            result.missing_keys[:] = [k for k in result.missing_keys if not _from_package(self, k, "")]
        if strict and (result.missing_keys or result.unexpected_keys):
            raise RuntimeError(
                f"state dict does not fit MedClip: missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
            )
        return result


def _from_package(module: MedClip, key: str, prefix: str) -> bool:
    """Whether ``key`` is a pretrained text weight that loads from its package (not a shipped tuned layer)."""
    head = prefix + _TEXT_WEIGHTS
    keep = module.text.trunk.shipped_prefixes()
    return key.startswith(head) and not (keep and key[len(head) :].startswith(keep))


def _drop_frozen_text(module: MedClip, state: dict[str, Any], prefix: str, _meta: Any) -> None:
    if module.text.trunk.ships_weights:
        return
    for key in [k for k in state if _from_package(module, k, prefix)]:
        del state[key]


@register_architecture("medclip")
def medclip(**config: Any) -> MedClip:
    """Generic entry: the card's ``config`` is a :class:`ClipConfig` as a dict."""
    return MedClip(ClipConfig.from_dict(config))


def tiny_config() -> ClipConfig:
    """A seconds-on-CPU model for tests: tiny CNN, tiny hash-token transformer, 32-d embeddings."""
    return ClipConfig(
        embed_dim=32,
        vision=VisionConfig(backbone="tiny_cnn", image_size=32, width=8),
        text=TextConfig(kind="tiny", context_length=32, vocab_size=512, width=32, layers=1, heads=2),
        head="linear",
    )


def mini_config() -> ClipConfig:
    """The embedded default: MobileNetV2 image trunk, frozen MiniLM text trunk, MLP heads into 512-d."""
    return ClipConfig(
        vision=VisionConfig(backbone="mobilenetv2", image_size=224), text=TextConfig(kind="minilm")
    )


@register_architecture("medclip_tiny")
def medclip_tiny(**overrides: Any) -> MedClip:
    cfg = tiny_config().to_dict()
    cfg.update(overrides)
    return MedClip(ClipConfig.from_dict(cfg))


@register_architecture("medclip_mini")
def medclip_mini(**overrides: Any) -> MedClip:
    cfg = mini_config().to_dict()
    cfg.update(overrides)
    return MedClip(ClipConfig.from_dict(cfg))


# The registry imports this module only; importing the adapter here registers "open_clip" (open_clip itself loads lazily).
from radclip.models import open_clip_adapter as _open_clip_adapter  # noqa: E402,F401
