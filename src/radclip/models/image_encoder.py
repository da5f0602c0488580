"""Image towers for the contrastive model: a trunk that maps a *model input* to pooled features.

Backbones, chosen by :class:`VisionConfig.backbone`:

* ``"mobilenetv2"``: torchvision MobileNetV2 ``features`` + global average pooling (1280-d). Its
  module names match :class:`radclip.models.triage.MobileNetV2Triage`, so the embedded triage
  model's backbone (or torchvision's ImageNet file) initialises it directly.
* ``"tiny_cnn"``: a four-layer CNN for tests (seconds on CPU).
* anything else: a ``timm`` model name (``"vit_base_patch16_224"``, ``"resnet50"``, ...) built with
  ``pretrained=False``; real weights are loaded only through :attr:`VisionConfig.init` (a file path).

The trunk never scales pixels itself: :class:`~radclip.models.clip.MedClip` turns the contract
tensor into the model input with :func:`radclip.models.preprocess.to_model_input` and
:func:`preprocessing_for`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from radclip.models.card import Preprocessing


@dataclass
class VisionConfig:
    """Image tower options (stored in the card's ``config["vision"]``)."""

    backbone: str = (
        "mobilenetv2"  # "mobilenetv2" | "tiny_cnn" | any timm model name (e.g. "vit_base_patch16_224")
    )
    image_size: int = 224  # contract size S the tower is fed
    in_chans: int = 1  # input channels of the first layer (1 = the grey contract tensor)
    width: int = 32  # tiny_cnn only: channels of the first conv (doubles each layer)
    init: str = "none"  # "none" | "imagenet" (mobilenetv2 only, offline file) | path to a .safetensors/.pth with backbone weights
    frozen: bool = (
        False  # keep the trunk's weights fixed (only the projection head trains); BN stays in eval mode
    )
    trainable_blocks: int = 0  # mobilenetv2 with frozen=False: train only the last N feature blocks (0 = all)


def preprocessing_for(cfg: VisionConfig) -> Preprocessing:
    """The card preprocessing this tower expects (ImageNet statistics; grey mean when in_chans == 1)."""
    return Preprocessing(input_size=cfg.image_size, scale="imagenet", in_chans=cfg.in_chans)


class ImageTrunk(nn.Module):
    """Model input ``(B, C, S, S)`` -> pooled features ``(B, num_features)``."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.features, self.num_features, self._pool = _build(cfg)
        if cfg.init not in ("none", ""):
            self.load_init(cfg.init)
        self._apply_freezing()
        self.train(self.training)  # frozen blocks start in eval mode (a new module is in train mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_trainable(self.forward_frozen(x))

    @property
    def n_frozen(self) -> int:
        """Leading feature blocks whose weights never change (all of them when ``frozen``)."""
        n = len(self.features) if isinstance(self.features, nn.Sequential) else 1
        if self.cfg.frozen:
            return n
        if self.cfg.trainable_blocks > 0 and isinstance(self.features, nn.Sequential):
            return max(0, n - self.cfg.trainable_blocks)
        return 0

    def forward_frozen(self, x: torch.Tensor) -> torch.Tensor:
        """The fixed part: its output can be cached (pooled features when the whole trunk is frozen)."""
        n = self.n_frozen
        if n == 0:
            return x
        for block in self.frozen_blocks():  # even after a caller's ``trunk.features.train()``
            if block.training:
                block.eval()  # frozen BN never normalises with batch statistics nor updates its buffers
        with torch.no_grad():
            if self.cfg.frozen:
                out = self.features(x)
                return out.mean(dim=(2, 3)) if self._pool else out
            return self.features[:n](x)

    def forward_trainable(self, h: torch.Tensor) -> torch.Tensor:
        """The trainable rest (and pooling), applied to :meth:`forward_frozen`'s output."""
        if self.cfg.frozen:
            return h
        n = self.n_frozen
        out = self.features[n:](h) if n else self.features(h)
        return out.mean(dim=(2, 3)) if self._pool else out

    def load_init(self, init: str) -> None:
        """Initialise the backbone from ImageNet (mobilenetv2) or a weight file (``features.*`` or bare keys)."""
        from radclip.models.weights import load_state_dict, load_torch_checkpoint

        if init == "imagenet":
            if self.cfg.backbone != "mobilenetv2":
                raise ValueError(
                    f"init='imagenet' is bundled offline for mobilenetv2 only, not {self.cfg.backbone!r}; pass a weight file path instead"
                )
            from radclip.models.triage import imagenet_mobilenet_file

            state = load_torch_checkpoint(imagenet_mobilenet_file())
        else:
            path = Path(init)
            if not path.is_file():
                raise FileNotFoundError(
                    f"vision init file {path} does not exist; use init='none', 'imagenet' or an existing weight file"
                )
            state = load_state_dict(path) if path.suffix == ".safetensors" else load_torch_checkpoint(path)
        ours = {
            k.removeprefix("features."): v
            for k, v in state.items()
            if k.startswith("features.") or self.cfg.backbone != "mobilenetv2"
        }
        first = "0.0.weight"
        if first in ours and ours[first].shape[1] != self.cfg.in_chans and self.cfg.in_chans == 1:
            ours[first] = ours[first].sum(
                dim=1, keepdim=True
            )  # RGB kernels summed = same response to a repeated grey image
        missing, unexpected = self.features.load_state_dict(ours, strict=False)
        if missing:
            raise ValueError(
                f"vision init {init!r} does not cover the {self.cfg.backbone} backbone: missing {missing[:5]}"
            )

    def _apply_freezing(self) -> None:
        if self.cfg.frozen:
            for p in self.parameters():
                p.requires_grad_(False)
        elif self.cfg.trainable_blocks > 0 and isinstance(self.features, nn.Sequential):
            keep = len(self.features) - self.cfg.trainable_blocks
            for i, block in enumerate(self.features):
                for p in block.parameters():
                    p.requires_grad_(i >= keep)

    def frozen_blocks(self) -> list[nn.Module]:
        """The modules whose weights *and* BatchNorm buffers never change (run in eval mode)."""
        n = self.n_frozen
        if n == 0:
            return []
        if self.cfg.frozen or not isinstance(self.features, nn.Sequential):
            return [self.features]
        return list(self.features[:n])

    def train(self, mode: bool = True) -> ImageTrunk:
        super().train(mode)
        if mode:
            for block in self.frozen_blocks():
                block.eval()  # frozen blocks: BatchNorm statistics must not drift
        return self


def _tiny_cnn(cfg: VisionConfig) -> tuple[nn.Module, int]:
    w = cfg.width
    layers: list[nn.Module] = []
    n_in = cfg.in_chans
    for i in range(4):
        n_out = w * (2**i)
        layers += [
            nn.Conv2d(n_in, n_out, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(n_out),
            nn.ReLU(inplace=True),
        ]
        n_in = n_out
    return nn.Sequential(*layers), n_in


def _mobilenetv2(cfg: VisionConfig) -> tuple[nn.Module, int]:
    from torchvision.models import mobilenet_v2

    tv = mobilenet_v2(weights=None)
    if cfg.in_chans != 3:
        old = tv.features[0][0]
        tv.features[0][0] = nn.Conv2d(cfg.in_chans, old.out_channels, 3, stride=2, padding=1, bias=False)
    return tv.features, tv.last_channel


def _build(cfg: VisionConfig) -> tuple[nn.Module, int, bool]:
    """(module, feature width, whether forward must average-pool the module's map)."""
    if cfg.backbone == "tiny_cnn":
        return (*_tiny_cnn(cfg), True)
    if cfg.backbone == "mobilenetv2":
        return (*_mobilenetv2(cfg), True)
    import timm

    try:
        model = timm.create_model(
            cfg.backbone, pretrained=False, num_classes=0, in_chans=cfg.in_chans, img_size=cfg.image_size
        )
    except TypeError:  # CNNs take no img_size
        model = timm.create_model(cfg.backbone, pretrained=False, num_classes=0, in_chans=cfg.in_chans)
    except RuntimeError as exc:
        raise ValueError(
            f"unknown image backbone {cfg.backbone!r}: use 'mobilenetv2', 'tiny_cnn' or a timm model name ({exc})"
        ) from exc
    return model, int(model.num_features), False
