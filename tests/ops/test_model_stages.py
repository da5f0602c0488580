"""The model registry with stages: transitions, one slot per stage, audit history, rollback, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radclip.engine import db
from radclip.engine.model_stages import ModelStages, StageError


def fake_version(folder: Path, version: str, payload: bytes, name: str = "tri") -> Path:
    """A weights file and its card (the registry reads only the card and the file's checksum)."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{name}-{version}.safetensors"
    weights.write_bytes(payload)
    card = {"name": name, "version": version, "task": "triage", "weights_file": weights.name}
    weights.with_name(f"{name}-{version}.card.json").write_text(json.dumps(card))
    return weights


@pytest.fixture()
def stages(tmp_path: Path) -> ModelStages:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    db.migrate(engine)
    return ModelStages(engine)


def test_full_lifecycle_and_history(stages: ModelStages, tmp_path: Path) -> None:
    v1 = stages.register(fake_version(tmp_path, "1", b"one"), "alice", "production")
    v2 = stages.register(fake_version(tmp_path, "2", b"two"), "alice")
    assert (v1.stage, v2.stage) == ("production", "candidate")
    import hashlib

    assert v2.sha256 == hashlib.sha256(b"two").hexdigest()
    token = stages.state_token()
    stages.shadow("tri@2", "bob")
    assert stages.state_token() > token
    for pct in (10, 25, 50):
        assert stages.canary("tri@2", pct, "bob").canary_percent == pct
    serving = stages.serving("tri")
    assert set(serving) == {"production", "canary"} and serving["canary"].canary_percent == 50
    assert stages.promote("tri", "carol").ref == "tri@2"
    assert {v.version: v.stage for v in stages.list("tri")} == {"1": "retired", "2": "production"}
    # no canary or shadow left: rollback restores the earlier production
    stages.rollback("tri", "dave")
    assert {v.version: v.stage for v in stages.list("tri")} == {"1": "production", "2": "retired"}
    moves = [(e.ref, e.from_stage, e.to_stage, e.canary_percent, e.actor) for e in stages.history("tri")]
    assert moves == [
        ("tri@1", None, "production", None, "alice"), ("tri@2", None, "candidate", None, "alice"),
        ("tri@2", "candidate", "shadow", None, "bob"), ("tri@2", "shadow", "canary", 10.0, "bob"),
        ("tri@2", "canary", "canary", 25.0, "bob"), ("tri@2", "canary", "canary", 50.0, "bob"),
        ("tri@1", "production", "retired", None, "carol"), ("tri@2", "canary", "production", None, "carol"),
        ("tri@2", "production", "retired", None, "dave"), ("tri@1", "retired", "production", None, "dave"),
    ]  # fmt: skip


def test_rollback_retires_canary_and_keeps_production(stages: ModelStages, tmp_path: Path) -> None:
    stages.register(fake_version(tmp_path, "1", b"one"), "a", "production")
    stages.register(fake_version(tmp_path, "2", b"two"), "a")
    stages.canary("tri@2", 10, "a")
    rolled = stages.rollback("tri", "auto", "AUC drop")
    assert [(v.ref, v.stage) for v in rolled] == [("tri@2", "retired")]
    assert stages.serving("tri")["production"].version == "1" and "canary" not in stages.serving("tri")
    assert stages.history("tri")[-1].reason == "AUC drop"


def test_refusals_name_the_problem(stages: ModelStages, tmp_path: Path) -> None:
    w1 = fake_version(tmp_path, "1", b"one")
    stages.register(w1, "a", "production")
    with pytest.raises(StageError, match="already registered"):
        stages.register(fake_version(tmp_path / "copy", "1b", b"one"), "a")  # same bytes, new version label
    with pytest.raises(StageError, match="already has a production"):
        stages.register(fake_version(tmp_path, "2", b"two"), "a", "production")
    stages.register(fake_version(tmp_path, "3", b"three"), "a")
    with pytest.raises(StageError, match="below 100"):
        stages.canary("tri@3", 100, "a")
    with pytest.raises(StageError, match="known: tri@1"):
        stages.shadow("tri@9", "a")
    with pytest.raises(StageError, match="cannot move"):
        stages.shadow("tri@1", "a")  # production does not step back to shadow; rollback does that
    with pytest.raises(StageError, match="no canary or shadow"):
        stages.promote("tri", "a")
    with pytest.raises(StageError, match="no model card"):
        stages.register(tmp_path / "nothing.safetensors", "a")
    # "~user" with no such user made pathlib raise RuntimeError: a 500 on POST /api/v1/models (schemathesis)
    with pytest.raises(StageError, match="names no home directory"):
        stages.register("~radclip-no-such-user-0/x.safetensors", "a")


def test_cli_moves_a_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from radclip.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    base = ["models", "--database", url, "--actor", "ops"]
    assert main([*base, "register", str(fake_version(tmp_path, "1", b"one")), "--production"]) == 0
    assert main([*base, "register", str(fake_version(tmp_path, "2", b"two"))]) == 0
    assert main([*base, "canary", "tri@2", "--percent", "25"]) == 0
    assert main([*base, "canary", "tri@7", "--percent", "25"]) == 2
    assert "no registered model 'tri@7'" in capsys.readouterr().err
    assert main([*base, "list", "--json"]) == 0
    rows = {r["version"]: (r["stage"], r["canary_percent"]) for r in json.loads(capsys.readouterr().out)}
    assert rows == {"1": ("production", None), "2": ("canary", 25.0)}
    assert main([*base, "rollback", "tri"]) == 0
    assert main([*base, "list", "--history"]) == 0
    assert "canary -> retired" in capsys.readouterr().out.replace("    ", " ").replace("  ", " ")
