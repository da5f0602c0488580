"""Model cards: what a weight set is, how to feed it, how good it is, where it came from.

A card is a JSON file next to its ``.safetensors`` file (same stem, ``.card.json``). The
service and the evaluators read everything they need to preprocess and label outputs
from the card, never from the model's name.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Preprocessing:
    """How a contract tensor (1, S, S) in [0, 1] becomes this model's input."""

    input_size: int = 224  # S of the contract tensor the model expects
    scale: str = "imagenet"  # "imagenet": (x - mean) / std per channel; "xrv": x * 2048 - 1024
    in_chans: int = 1  # 3 = the grey channel is repeated before normalisation
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)  # used when scale == "imagenet"
    std: tuple[float, ...] = (0.229, 0.224, 0.225)


@dataclass
class ModelCard:
    """Everything a user or the service needs to know about one weight set."""

    name: str  # registry name, e.g. "radclip-mobilenetv2-nih"
    architecture: str  # registered architecture entry, e.g. "mobilenetv2_triage"
    version: str  # bumped whenever the weights change
    task: str  # "triage" | "clip-image" | "clip"
    labels: list[str] = field(default_factory=list)  # output order
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    weights_file: str | None = None  # file name, relative to the card
    weights_sha256: str | None = None  # checked on load; a mismatch refuses to load
    license: str = "unknown"
    source: str = ""  # where the weights came from (training command, upstream URL)
    init_weights: str = ""  # provenance of any pretrained initialisation
    training_data: str = ""  # data set, split and size
    metrics: dict[str, Any] = field(default_factory=dict)  # measured numbers, each with its data and split
    calibration: dict[str, Any] = field(default_factory=dict)  # e.g. {"temperature": {label: T}}
    config: dict[str, Any] = field(default_factory=dict)  # architecture config kwargs
    notes: list[str] = field(default_factory=list)  # limitations, honestly stated

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        data = dict(data)
        pre = data.pop("preprocessing", {}) or {}
        for key in ("mean", "std"):
            if key in pre:
                pre[key] = tuple(pre[key])
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"model card has unknown fields {sorted(unknown)}; known fields: {sorted(known)}")
        return cls(preprocessing=Preprocessing(**pre), **data)

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        return cls.from_dict(json.loads(Path(path).read_text()))


def card_path_for(weights_path: str | Path) -> Path:
    """``foo.safetensors`` -> ``foo.card.json``."""
    p = Path(weights_path)
    return p.with_name(p.name.removesuffix(".safetensors") + ".card.json")
