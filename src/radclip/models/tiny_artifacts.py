"""Tiny seeded model artifacts (weights + card) for tests, benchmarks and soak runs: seconds on CPU, no download.

One builder for what tests, the Ray tests and ``benchmarks/soak.py`` all need: a random-weight
``mobilenetv2_triage`` over the NIH labels and a ``medclip_tiny`` image-text model, each written as
``.safetensors`` with its ``.card.json`` and loadable through :func:`radclip.models.registry.load_pretrained`.
The weights depend only on ``seed`` (the global torch RNG is left as it was), so two calls write
byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TRIAGE_STEM = "tiny-triage"
CLIP_STEM = "tiny-clip"


def _seeded_model(arch: str, seed: int) -> Any:
    import torch

    from radclip.models.registry import create_model

    # fork_rng: seeding here must not change the random numbers the caller draws afterwards
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model(arch)


def write_tiny_triage(
    folder: str | Path, version: str = "test-0", *, seed: int = 0, calibration: dict[str, Any] | None = None
) -> Path:
    """``folder/tiny-triage.safetensors`` + card: mobilenetv2 triage, 224 px, 1 channel, ImageNet scaling."""
    from radclip.io.labels import NIH_LABELS
    from radclip.models.card import ModelCard, Preprocessing
    from radclip.models.weights import save_state_dict

    folder = Path(folder)
    path = folder / f"{TRIAGE_STEM}.safetensors"
    sha = save_state_dict(_seeded_model("mobilenetv2_triage", seed).state_dict(), path)
    ModelCard(
        name=TRIAGE_STEM,
        architecture="mobilenetv2_triage",
        version=version,
        task="triage",
        labels=list(NIH_LABELS),
        preprocessing=Preprocessing(input_size=224, scale="imagenet", in_chans=1),
        weights_file=path.name,
        weights_sha256=sha,
        calibration=dict(calibration or {}),
    ).save(folder / f"{TRIAGE_STEM}.card.json")
    return path


def write_tiny_clip(folder: str | Path, version: str = "test-0", *, seed: int = 0) -> Path:
    """``folder/tiny-clip.safetensors`` + card: ``medclip_tiny`` (32 px image, 32-d embeddings)."""
    from radclip.models.card import ModelCard
    from radclip.models.clip import tiny_config
    from radclip.models.weights import save_state_dict

    folder = Path(folder)
    model = _seeded_model("medclip_tiny", seed)
    path = folder / f"{CLIP_STEM}.safetensors"
    sha = save_state_dict(model.state_dict(), path)
    ModelCard(
        name=CLIP_STEM,
        architecture="medclip",
        version=version,
        task="clip",
        weights_file=path.name,
        weights_sha256=sha,
        config=tiny_config().to_dict(),
        preprocessing=model.preprocessing,
    ).save(folder / f"{CLIP_STEM}.card.json")
    return path


def write_tiny_models(folder: str | Path, version: str = "test-0", *, seed: int = 0) -> tuple[Path, Path]:
    """Both artifacts in ``folder``: ``(triage weights, clip weights)``."""
    return write_tiny_triage(folder, version, seed=seed), write_tiny_clip(folder, version, seed=seed)
