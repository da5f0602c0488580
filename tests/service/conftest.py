"""A real uvicorn server on loopback, serving ``create_app`` with a small random-weight triage model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from radclip.service.background import BackgroundServer


@pytest.fixture(scope="session")
def tiny_triage_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mobilenetv2 triage model with seeded random weights and a proper card (no download, no training)."""
    from radclip.io.labels import NIH_LABELS
    from radclip.models.tiny_artifacts import write_tiny_triage

    calibration = {"temperature": {NIH_LABELS[0]: 2.0}}
    return write_tiny_triage(tmp_path_factory.mktemp("weights"), calibration=calibration)


@pytest.fixture(scope="session")
def tiny_clip_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny image-text model (seeded random weights) with its card: seconds on CPU, no MiniLM needed."""
    from radclip.models.tiny_artifacts import write_tiny_clip

    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


def write_png(path: Path, seed: int, size: int = 64) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rng.random((size, size)) * 255).astype("uint8"), mode="L").save(path)
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for i in range(12):
        write_png(folder / f"case{i:02d}.png", seed=100 + i)
    return folder


LiveServer = BackgroundServer  # the name the tests use


@pytest.fixture(scope="module")
def live_server(tiny_triage_weights: Path, tiny_clip_weights: Path, tiny_corpus: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from radclip.service.app import create_app
    from radclip.settings import load_settings

    settings = load_settings(home=tmp_path_factory.mktemp("home"), triage_model=str(tiny_triage_weights),
                             clip_model=str(tiny_clip_weights), corpus=tiny_corpus, max_upload_mb=2)
    with LiveServer(create_app(settings)) as server:
        server.corpus = tiny_corpus  # type: ignore[attr-defined]
        yield server
