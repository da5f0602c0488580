"""`radclip conditions` and `radclip index` through the real CLI entry point, with fake encoders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from engine_fakes import HashingTextEmbedder, ProjectionImageEmbedder
from PIL import Image

from radclip.cli import main


@pytest.fixture()
def fake_text(monkeypatch: pytest.MonkeyPatch) -> HashingTextEmbedder:
    emb = HashingTextEmbedder()
    monkeypatch.setattr("radclip.engine.encoders.default_text_embedder", lambda *a, **k: emb)
    return emb


def test_conditions_cli_roundtrip(fake_text: HashingTextEmbedder, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conditions", "register", "rib_fracture", "--prompt", "rib fracture", "--prompt", "broken rib",
                 "--synonym", "fractured rib", "--category", "osseous", "--by", "dr_a"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["status"] == "registered"
    assert main(["conditions", "register", "rib_fracture", "--prompt", "rib fracture", "--prompt", "broken rib",
                 "--synonym", "fractured rib", "--category", "osseous"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out) | {"embedding_id": 0} == {"status": "unchanged", "name": "rib_fracture",
                                                                          "version": 1, "embedding_id": 0}  # fmt: skip
    assert main(["conditions", "register", "rib_fracture", "--prompt", "displaced rib fracture", "--category", "osseous"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 2
    assert main(["conditions", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(c["name"], c["version"], c["prompts"]) for c in listed] == [("rib_fracture", 2, ["displaced rib fracture"])]
    assert main(["conditions", "history", "rib_fracture", "--json"]) == 0
    hist = json.loads(capsys.readouterr().out)
    assert [(h["version"], h["registered_by"]) for h in hist] == [(1, "dr_a"), (2, "cli")]
    assert main(["conditions", "retire", "rib_fracture"]) == 0
    capsys.readouterr()
    assert main(["conditions", "list", "--json"]) == 0 and json.loads(capsys.readouterr().out) == []
    assert main(["conditions", "register", "bad name", "--prompt", "xyz"]) == 1
    assert "not a slug" in capsys.readouterr().err
    assert main(["conditions", "history", "nope"]) == 1


def test_conditions_seed_cli(fake_text: HashingTextEmbedder, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conditions", "seed"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["registered"] >= 60 and fake_text.calls == 1


def test_index_cli_builds_then_warm_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    emb = ProjectionImageEmbedder()
    monkeypatch.setattr("radclip.engine.encoders.default_image_embedder", lambda *a, **k: emb)
    folder = tmp_path / "pool"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8)).save(folder / ("sub" if i % 2 else "") / f"{i}.png")
    assert main(["index", str(folder), "--no-progress", "--batch-size", "4"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["loaded"], first["embedded"], first["live"], emb.calls) == (False, 6, 6, 2)
    assert main(["index", str(folder), "--no-progress"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["loaded"], second["key"], emb.calls) == (True, first["key"], 2)
    manifest = tmp_path / "m.csv"
    manifest.write_text("image_id,path,patient_id,view,report\na,pool/0.png,p1,PA,normal\nb,pool/sub/1.png,p2,AP,effusion\n")
    assert main(["index", "--manifest", str(manifest), "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["live"] == 2
    assert main(["index", str(tmp_path / "missing"), "--no-progress"]) == 1


def test_conditions_list_on_a_fresh_home_seeds_like_the_service(fake_text: HashingTextEmbedder, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # fmt: skip
    from radclip.engine.registry import SEED_PATH

    seeded = len(json.loads(SEED_PATH.read_text())["conditions"])
    assert main(["conditions", "list", "--json"]) == 0
    out = capsys.readouterr()
    assert len(json.loads(out.out)) == seeded >= 60  # before: [] until `radclip serve` had run once
    assert f"registry was empty; registered the {seeded} shipped seed conditions" in out.err
    assert main(["conditions", "list", "--json"]) == 0
    again = capsys.readouterr()
    assert len(json.loads(again.out)) == seeded and again.err == ""  # seeded once, and said so once
    from radclip.settings import get_settings

    monkeypatch.setenv("RADCLIP_HOME", str(tmp_path / "opted-out"))
    monkeypatch.setenv("RADCLIP_SEED_CONDITIONS", "false")
    get_settings.cache_clear()
    assert main(["conditions", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
