"""``radclip triage`` and ``radclip explain`` on a PNG and on the real DICOM (skipped when the shared data is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from radclip.io.labels import NIH_LABELS
from radclip.models.card import ModelCard, Preprocessing
from radclip.models.registry import create_model
from radclip.models.weights import save_state_dict


@pytest.fixture()
def tiny_card(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = create_model("mobilenetv2_triage", pretrained=False)
    with torch.no_grad():
        model.classifier.weight.normal_(0, 0.5)
    sha = save_state_dict(model.state_dict(), tmp_path / "m.safetensors")
    temps = {lab: 1.0 + k / 10 for k, lab in enumerate(NIH_LABELS)}
    card = ModelCard(name="m", architecture="mobilenetv2_triage", version="t1", task="triage", labels=list(NIH_LABELS),
                     preprocessing=Preprocessing(input_size=64), weights_file="m.safetensors", weights_sha256=sha,
                     calibration={"temperature": temps, "val_bin_counts": [50] * 10})  # fmt: skip
    return card.save(tmp_path / "m.card.json")


@pytest.fixture()
def png(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "x.png"
    Image.fromarray(rng.integers(0, 255, (80, 100)).astype(np.uint8)).save(path)
    return path


def test_triage_json_is_calibrated(tiny_card: Path, png: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from radclip.cli import main
    from radclip.io.datasets import load_pixels
    from radclip.models.preprocess import image_to_model_input
    from radclip.models.registry import load_pretrained

    assert main(["triage", str(png), "--model", str(tiny_card), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["model_version"] == "t1" and res["calibrated"] and res["inference_ms"] > 0
    assert [f["label"] for f in res["findings"]] == list(NIH_LABELS)
    model, card = load_pretrained(tiny_card)
    _, x = image_to_model_input(load_pixels(png), card.preprocessing)
    logits = model.predict(x).logits[0].numpy()
    for k, f in enumerate(res["findings"]):
        assert f["probability"] == pytest.approx(1 / (1 + np.exp(-logits[k] / (1.0 + k / 10))), abs=1e-4)
        assert f["band95"][0] <= f["probability"] <= f["band95"][1]


def test_explain_writes_png(tiny_card: Path, png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from radclip.cli import main

    out = tmp_path / "cam.png"
    assert main(["explain", str(png), "--model", str(tiny_card), "--label", "Effusion", "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert json.loads(capsys.readouterr().out)["labels"] == ["Effusion"]
    assert main(["explain", str(png), "--model", str(tiny_card), "--top-k", "2", "--method", "gradcam", "--out", str(out)]) == 0
    assert len(json.loads(capsys.readouterr().out)["labels"]) == 2
    with pytest.raises(SystemExit, match="did you mean"):
        main(["explain", str(png), "--model", str(tiny_card), "--label", "Efusion", "--out", str(out)])


def test_triage_on_real_dicom(tiny_card: Path, real_dicom: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from radclip.cli import main

    assert main(["triage", str(real_dicom), "--model", str(tiny_card), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["findings"]) == 14
