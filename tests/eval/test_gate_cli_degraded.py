"""``radclip report`` + ``radclip validate`` end to end on a synthetic manifest: identical models pass,
a degraded copy (classifier negated) fails with a readable diff. Tiny random-weight models, seconds on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from radclip.io.labels import NIH_LABELS

N_NIH, N_COVID = 40, 8


def _models(tmp: Path, negate: bool = False) -> tuple[Path, Path]:
    import torch

    from radclip.models.card import ModelCard, Preprocessing
    from radclip.models.clip import tiny_config
    from radclip.models.registry import create_model
    from radclip.models.weights import save_state_dict

    torch.manual_seed(0)
    tri = create_model("mobilenetv2_triage")
    if negate:  # the deliberately degraded release candidate: every score's ranking reversed
        with torch.no_grad():
            tri.classifier.weight.mul_(-1)
            tri.classifier.bias.mul_(-1)
    tag = "bad" if negate else "good"
    sha = save_state_dict(tri.state_dict(), tmp / f"tri-{tag}.safetensors")
    tcard = ModelCard(name=f"tri-{tag}", architecture="mobilenetv2_triage", version="t", task="triage", labels=list(NIH_LABELS),
                      preprocessing=Preprocessing(input_size=64), weights_file=f"tri-{tag}.safetensors", weights_sha256=sha,
                      calibration={"temperature": dict.fromkeys(NIH_LABELS, 1.5)}).save(tmp / f"tri-{tag}.card.json")
    torch.manual_seed(1)
    clip = create_model("medclip_tiny")
    sha = save_state_dict(clip.state_dict(), tmp / "clip.safetensors")
    ccard = ModelCard(name="clip", architecture="medclip", version="t", task="clip", weights_file="clip.safetensors", weights_sha256=sha,
                      config=tiny_config().to_dict(), preprocessing=clip.preprocessing).save(tmp / "clip.card.json")
    return tcard, ccard


def _manifest(tmp: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(N_NIH + N_COVID):
        nih = i < N_NIH
        positive = rng.random() < 0.4
        # All 14 labels follow brightness: the random network ranks them far from chance in one direction
        # or the other, so negating its classifier is a large drop that the paired bootstrap must call real.
        img = (rng.integers(0, 60, (48, 48)) + (150 if positive else 20)).astype(np.uint8)
        Image.fromarray(img).save(tmp / f"{i}.png")
        labels = {lab: float(positive) if nih else np.nan for lab in NIH_LABELS}
        rows.append({"image_id": f"i{i}", "source": "nih" if nih else "covid", "path": f"{i}.png", "patient_id": f"p{i // 2}", "split": "test",
                     **labels, "no_finding": np.nan, "report": "" if nih else f"patient {i} with bilateral opacities " + "and fever " * (i % 4),
                     "age": 25 + (i // 2) * 3, "sex": "M" if (i // 2) % 2 else "F", "view": "PA"})
    path = tmp / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_report_then_gate_passes_and_degraded_model_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from radclip.cli import main
    from radclip.eval.metrics import roc_auc

    manifest = _manifest(tmp_path)
    tri, clip = _models(tmp_path)
    bad, _ = _models(tmp_path, negate=True)
    common = ["--manifest", str(manifest), "--images-root", str(tmp_path), "--clip-model", str(clip), "--n-boot", "60"]
    out = tmp_path / "rep"
    assert main(["report", *common, "--triage-model", str(tri), "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert (out / "report.html").is_file() and all((out / f).is_file() for f in rep["figures"].values())
    perf = rep["performance"]
    assert perf["n_images"] == N_NIH and perf["n_patients"] == N_NIH // 2 and rep["retrieval"]["n_images"] == N_COVID

    # independent computation: the triage model's own logits -> plain rank AUC
    from radclip.io.datasets import ManifestDataset
    from radclip.models.preprocess import to_model_input
    from radclip.models.registry import load_pretrained

    model, card = load_pretrained(tri)
    ds = ManifestDataset(manifest, tmp_path, size=64)
    x = to_model_input(np.stack([ds.image(i) for i in range(N_NIH)]), card.preprocessing)
    logits = model.predict(x).logits.numpy()
    labels = ds.labels_matrix()[:N_NIH]
    for k in (0, 2, 5):
        assert perf["triage"]["per_label"][NIH_LABELS[k]]["auc"] == pytest.approx(roc_auc(labels[:, k], logits[:, k]), abs=1e-6)
    assert rep["gate"]["triage_auc"]["Effusion"]["auc"] == perf["triage"]["per_label"]["Effusion"]["auc"]
    measurable = {k: v["auc"] for k, v in rep["gate"]["triage_auc"].items() if v["measurable"]}
    assert max(measurable.values()) > 0.8  # precondition: negating the classifier must then drop some AUC far below
    capsys.readouterr()

    assert main(["validate", *common, "--triage-model", str(tri), "--baseline", str(out / "report.json")]) == 0
    text = capsys.readouterr().out
    assert "GATE PASSED" in text and "triage AUC Effusion" in text

    assert main(["validate", *common, "--triage-model", str(bad), "--baseline", str(out / "report.json")]) == 1
    text = capsys.readouterr().out
    assert "GATE FAILED" in text
    worst = max(measurable, key=lambda k: measurable[k])
    line = next(ln for ln in text.splitlines() if ln.startswith(f"triage AUC {worst} "))
    assert "FAIL" in line and f"{measurable[worst]:.3f}" in line and f"{1 - measurable[worst]:.3f}" in line
    assert not any(ln.startswith("zero-shot AUC") and "FAIL" in ln for ln in text.splitlines())  # image-text model unchanged


def test_validate_refuses_a_missing_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from radclip.cli import main

    code = main(["validate", "--manifest", str(tmp_path / "m.csv"), "--baseline", str(tmp_path / "nope.json")])
    assert code == 2 and "radclip report" in capsys.readouterr().out


def test_validate_on_changed_data_exits_3_and_names_the_rebaseline_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from radclip.cli import main
    from radclip.eval.gate import score_block
    from radclip.io.manifest import data_snapshot

    manifest = _manifest(tmp_path)
    block = {"gate_version": 2, "split": "test", "data_snapshot": "sha256:" + "0" * 64, "triage_auc": {}, "zeroshot_auc": {},
             "fairness": {"flags": [], "gaps": {}}, "scores": score_block([], [], np.array([]), np.zeros((0, 0)), np.zeros((0, 0)), np.zeros((0, 0)))}
    (tmp_path / "base.json").write_text(json.dumps({"gate": block}))
    code = main(["validate", "--manifest", str(manifest), "--images-root", str(tmp_path), "--baseline", str(tmp_path / "base.json")])
    out = capsys.readouterr().out
    assert code == 3
    assert data_snapshot(manifest) in out and "radclip report --out docs/reports" in out and "data change" in out
