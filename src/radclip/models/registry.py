"""A registry of architectures (builders) and of shipped weight sets (cards), timm style.

* ``@register_architecture("name")`` on a tiny builder ``fn(**config) -> nn.Module``.
* ``create_model("name", **config)`` builds it; unknown names get a "did you mean" hint.
* ``load_pretrained("radclip-mobilenetv2-nih")`` finds the card under the shipped
  weights folder (or takes a path to a ``.safetensors``/``.card.json``), builds the card's
  architecture with the card's config and loads the verified weights.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from radclip.models.card import ModelCard, card_path_for
from radclip.models.weights import SHIPPED_DIR, WeightsError, load_state_dict

_ARCHITECTURES: dict[str, Callable[..., Any]] = {}
# Modules whose import registers architectures; imported on first lookup, not at package import.
_ARCH_MODULES = ("radclip.models.triage", "radclip.models.clip")


def register_architecture(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _ARCHITECTURES and _ARCHITECTURES[name] is not fn:
            raise ValueError(f"architecture {name!r} is registered twice")
        _ARCHITECTURES[name] = fn
        return fn

    return deco


def _import_arch_modules() -> None:
    for mod in _ARCH_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def _did_you_mean(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"{hint} Known: {', '.join(sorted(options)) or '(none)'}"


def list_architectures() -> list[str]:
    _import_arch_modules()
    return sorted(_ARCHITECTURES)


def create_model(name: str, **config: Any) -> Any:
    _import_arch_modules()
    if name not in _ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r}{_did_you_mean(name, list(_ARCHITECTURES))}")
    return _ARCHITECTURES[name](**config)


def list_shipped() -> list[str]:
    return sorted(p.name.removesuffix(".card.json") for p in SHIPPED_DIR.glob("*.card.json"))


def find_card(name_or_path: str | Path) -> tuple[ModelCard, Path]:
    """Resolve a shipped model name or a path to its card and the card's path."""
    p = Path(name_or_path)
    if p.suffix == ".safetensors":
        p = card_path_for(p)
    if p.suffix == ".json" and p.is_file():
        return ModelCard.load(p), p
    shipped = SHIPPED_DIR / f"{name_or_path}.card.json"
    if shipped.is_file():
        return ModelCard.load(shipped), shipped
    raise WeightsError(f"no model card for {str(name_or_path)!r}{_did_you_mean(str(name_or_path), list_shipped())}")


def load_pretrained(name_or_path: str | Path, *, verify: bool = True) -> tuple[Any, ModelCard]:
    """Build the card's architecture and load its verified weights; returns ``(model.eval(), card)``."""
    card, card_file = find_card(name_or_path)
    if not card.weights_file:
        raise WeightsError(f"card {card_file} names no weights_file")
    model = create_model(card.architecture, **card.config)
    state = load_state_dict(card_file.parent / card.weights_file, card.weights_sha256 if verify else None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(
            f"weights {card.weights_file} do not fit architecture {card.architecture!r}: "
            f"missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}"
        )
    model.eval()
    return model, card
