"""ONNX export of the triage network and the two image–text towers.

Every graph takes what the runtime has at hand and returns what it needs, so the service
does no torch work at all on the ONNX path:

* triage: contract tensor ``(B, 1, S, S)`` in [0, 1] → ``logits (B, K)``, ``features (B, C, h, w)``
  (the pre-pooling map) and ``cams (B, K, h, w)`` — CAM still costs one pass;
* image tower: contract tensor → L2-normalised embedding ``(B, D)``;
* text tower: ``input_ids``, ``attention_mask`` ``(B, L)`` int64 → L2-normalised embedding.

The model's own preprocessing (ImageNet or torchxrayvision scaling) is inside the graph. Wrappers
are exported in ``eval()`` mode and checked to be so — a wrapper left in training mode is the
classic source of wrong batch-norm outputs. Each file carries its model card and preprocessing as
ONNX metadata, and its sha256 is written to ``manifest.json`` beside it.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from radclip.models.preprocess import to_model_input
from radclip.models.weights import sha256_file

DEFAULT_OPSET = 17


@dataclass(frozen=True)
class ExportedModel:
    role: str  # "triage" | "clip-image" | "clip-text"
    path: Path
    sha256: str
    source_name: str
    source_version: str
    source_sha256: str | None
    partner_name: str | None = None  # a graph built from two models (the fused /screen graph): the second one
    partner_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"role": self.role, "file": self.path.name, "sha256": self.sha256, "source_name": self.source_name,
               "source_version": self.source_version, "source_sha256": self.source_sha256}  # fmt: skip
        if self.partner_name is not None:
            out.update(partner_name=self.partner_name, partner_sha256=self.partner_sha256)
        return out


def triage_head(model: Any, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, CAMs of every class) from the pre-pooling feature map: what each triage graph outputs."""
    from radclip.explain.cam import class_activation_maps

    head = model.classifier
    return model.forward_head(features), class_activation_maps(features, head.weight, head.bias)


class TriageGraph(nn.Module):
    def __init__(self, model: nn.Module, preprocessing: Any) -> None:
        super().__init__()
        self.model, self.pre = model, preprocessing

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.model.forward_features(to_model_input(x, self.pre))
        logits, cams = triage_head(self.model, features)
        return logits, features, cams


class ImageGraph(nn.Module):
    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(x, normalize=True)


class TextGraph(nn.Module):
    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        feats = self.clip.text.trunk({"input_ids": input_ids, "attention_mask": attention_mask})
        return nn.functional.normalize(self.clip.project_text(feats), dim=-1)


def _check_eval(module: nn.Module) -> None:
    training = [name for name, m in module.named_modules() if m.training]
    if training:
        raise RuntimeError(f"refusing to export modules in training mode: {training[:5]}; call .eval() first")


def _export(graph: nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: list[str], outputs: list[str],
            dynamic: dict[str, dict[int, str]], metadata: dict[str, str], opset: int) -> None:  # fmt: skip
    import onnx

    graph.eval()
    _check_eval(graph)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    fastpath = torch.backends.mha.get_fastpath_enabled()
    # The fused transformer fast path has no ONNX symbol; the unfused ops export (and compute the same).
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks become constants: intended
            torch.onnx.export(graph, args, str(tmp), input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                              opset_version=opset, dynamo=False, do_constant_folding=True)  # fmt: skip
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    proto = onnx.load(str(tmp))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))
    tmp.replace(path)  # atomic: a half-written file is never taken for a finished export


def _card_meta(card: Any, preprocessing: Any) -> dict[str, str]:
    from dataclasses import asdict

    return {"radclip.card": json.dumps(card.to_dict()), "radclip.preprocessing": json.dumps(asdict(preprocessing))}


def _artifact(role: str, path: Path, card: Any) -> ExportedModel:
    return ExportedModel(role, path, sha256_file(path), card.name, card.version, card.weights_sha256)


def export_triage(model: nn.Module, card: Any, out_dir: Path, opset: int = DEFAULT_OPSET) -> ExportedModel:
    size = card.preprocessing.input_size
    path = out_dir / f"{card.name}.triage.onnx"
    x = torch.rand(2, 1, size, size)
    _export(TriageGraph(model.eval(), card.preprocessing), (x,), path, ["image"], ["logits", "features", "cams"],
            {"image": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}, "cams": {0: "batch"}},
            _card_meta(card, card.preprocessing), opset)  # fmt: skip
    return _artifact("triage", path, card)


def export_clip(model: nn.Module, card: Any, out_dir: Path, opset: int = DEFAULT_OPSET) -> list[ExportedModel]:
    model = model.eval()
    size = model.preprocessing.input_size
    image_path = out_dir / f"{card.name}.image.onnx"
    _export(ImageGraph(model), (torch.rand(2, 1, size, size),), image_path, ["image"], ["embedding"],
            {"image": {0: "batch"}, "embedding": {0: "batch"}}, _card_meta(card, model.preprocessing), opset)  # fmt: skip
    tokens = model.tokenize(["a chest x-ray", "small left pleural effusion with basal atelectasis"])
    text_path = out_dir / f"{card.name}.text.onnx"
    _export(TextGraph(model), (tokens["input_ids"], tokens["attention_mask"]), text_path, ["input_ids", "attention_mask"],
            ["embedding"], {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}},
            _card_meta(card, model.preprocessing), opset)  # fmt: skip
    return [_artifact("clip-image", image_path, card), _artifact("clip-text", text_path, card)]


def write_manifest(out_dir: Path, exported: list[ExportedModel], opset: int = DEFAULT_OPSET) -> Path:
    path = out_dir / "manifest.json"
    old = json.loads(path.read_text()) if path.is_file() else {"models": []}
    keep = [m for m in old.get("models", []) if m["file"] not in {e.path.name for e in exported}]
    data = {"opset": opset, "models": keep + [e.to_dict() for e in exported]}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
