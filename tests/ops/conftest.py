"""Two real triage versions (the shipped weights and a copy with a changed head), a tiny image-text model, images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.ops.ops_helpers import SHIPPED


def _negated_head(out_dir: Path, tag: str, negate_intercepts: bool) -> Path:
    import dataclasses

    import torch

    from radclip.models.registry import load_pretrained
    from radclip.models.weights import save_state_dict

    model, card = load_pretrained(SHIPPED)
    with torch.no_grad():  # a negated head ranks every finding in reverse: a real, clearly worse version
        model.classifier.weight.neg_()
        model.classifier.bias.neg_()
    out = out_dir / f"triage-{tag}.safetensors"
    sha = save_state_dict(model.state_dict(), out)
    calibration = dict(card.calibration or {})
    if negate_intercepts:
        calibration["bias"] = {k: -float(v) for k, v in (calibration.get("bias") or {}).items()}
    v2 = dataclasses.replace(card, version=f"{card.version}-{tag}", weights_file=out.name, weights_sha256=sha,
                             calibration=calibration)  # fmt: skip
    v2.save(out.with_name(f"triage-{tag}.card.json"))
    return out


@pytest.fixture(scope="session")
def changed_head_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped triage network with its classifier negated: a second real version (and a clearly worse one)."""
    return _negated_head(tmp_path_factory.mktemp("v2"), "head2", negate_intercepts=False)


@pytest.fixture(scope="session")
def discordant_head_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The negated head with its Platt intercepts negated too, so its calls cross the operating points.

    The shipped card's per-label intercepts (about -2) keep both the shipped and the merely negated
    head below 0.5 on noise images, so their calls agree; negating the intercepts puts this version's
    probabilities above 0.5 where production's stay below: every study is discordant.
    """
    return _negated_head(tmp_path_factory.mktemp("v3"), "flip3", negate_intercepts=True)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from radclip.models.tiny_artifacts import write_tiny_clip

    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def server(
    changed_head_weights: Path, tiny_clip: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    from radclip.engine import db
    from radclip.engine.keys import KeyStore
    from radclip.service.app import create_app
    from radclip.service.background import BackgroundServer
    from radclip.settings import load_settings

    home = tmp_path_factory.mktemp("home")
    settings = load_settings(home=home, triage_model=SHIPPED, clip_model=str(tiny_clip), backend="pytorch",
                             index_on_start=False, corpus=home / "none")  # fmt: skip
    engine = db.make_engine(settings.resolved_database_url)
    db.migrate(engine)
    keys = {role: KeyStore(engine).create(f"ops-{role}", role) for role in ("admin", "reader")}
    engine.dispose()
    app = create_app(settings)
    with BackgroundServer(app) as srv:
        srv.app, srv.keys = app, keys  # type: ignore[attr-defined]
        yield srv
