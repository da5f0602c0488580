"""``radclip report`` on a small real subset of the shared test split (skips without the data): files, sizes, numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radclip.io.labels import NIH_LABELS


def _subset(cxr_manifest: Path, tmp: Path) -> Path:
    frame = pd.read_csv(cxr_manifest, dtype=str, keep_default_na=False)
    test = frame[frame["split"] == "test"]
    nih_patients = sorted(test.loc[test["source"] == "nih", "patient_id"].unique())[:18]
    nih = test[test["patient_id"].isin(nih_patients)]
    covid = test[(test["source"] == "covid") & (test["report"].str.strip() != "")].head(10)
    other = test[test["source"].isin(["figure1", "actualmed"])].groupby("source").head(2)
    path = tmp / "subset.csv"
    pd.concat([nih, covid, other]).to_csv(path, index=False)
    return path


def _tiny(tmp: Path) -> tuple[Path, Path]:
    import torch

    from radclip.models.card import ModelCard, Preprocessing
    from radclip.models.clip import tiny_config
    from radclip.models.registry import create_model
    from radclip.models.weights import save_state_dict

    torch.manual_seed(0)
    tri = create_model("mobilenetv2_triage")
    sha = save_state_dict(tri.state_dict(), tmp / "t.safetensors")
    tcard = ModelCard(name="t", architecture="mobilenetv2_triage", version="0", task="triage", labels=list(NIH_LABELS),
                      preprocessing=Preprocessing(input_size=64), weights_file="t.safetensors", weights_sha256=sha).save(tmp / "t.card.json")
    clip = create_model("medclip_tiny")
    sha = save_state_dict(clip.state_dict(), tmp / "c.safetensors")
    ccard = ModelCard(name="c", architecture="medclip", version="0", task="clip", weights_file="c.safetensors", weights_sha256=sha,
                      config=tiny_config().to_dict(), preprocessing=clip.preprocessing).save(tmp / "c.card.json")
    return tcard, ccard


def test_report_on_real_subset(cxr_manifest: Path, tmp_path: Path) -> None:
    from radclip.cli import main
    from radclip.eval.zeroshot import eval_set_embeddings, zeroshot_scores
    from radclip.io.datasets import ManifestDataset
    from radclip.models.registry import load_pretrained

    manifest = _subset(cxr_manifest, tmp_path)
    tri, clip = _tiny(tmp_path)
    out = tmp_path / "report"
    args = ["report", "--manifest", str(manifest), "--images-root", str(cxr_manifest.parent), "--triage-model", str(tri), "--clip-model", str(clip), "--n-boot", "50", "--out", str(out)]
    assert main(args) == 0
    rep = json.loads((out / "report.json").read_text())
    html = (out / "report.html").read_text()
    for name in rep["figures"].values():
        assert (out / name).stat().st_size > 5_000, name
    assert {"auc_forest", "confusion", "embedding", "prompt_sensitivity", "reliability"} <= set(rep["figures"])
    assert sum(p.stat().st_size for p in out.iterdir()) < 3_000_000
    assert "Ethnicity is absent" in html and "Limitations" in html
    assert set(rep["data"]["by_source"]) == {"nih", "covid", "figure1", "actualmed"}
    assert rep["embedding"]["clip"]["n"] == rep["data"]["n_images"]

    # zero-shot AUC in the JSON == an independent recomputation with sklearn
    from sklearn.metrics import roc_auc_score

    model, _ = load_pretrained(clip)
    ds = ManifestDataset(manifest, cxr_manifest.parent, split="test", sources=["nih"], size=model.preprocessing.input_size)
    import torch

    with torch.inference_mode():
        img = model.encode_image(torch.from_numpy(np.stack([ds.image(i) for i in range(len(ds))]))).numpy()
        pos, neg = eval_set_embeddings(lambda t: model.encode_text(t).numpy(), list(NIH_LABELS))
    scores = zeroshot_scores(img, pos, neg)
    labels = ds.labels_matrix()
    checked = 0
    for k, name in enumerate(NIH_LABELS):
        entry = rep["performance"]["zeroshot"]["per_label"][name]
        if entry["measurable"]:
            assert entry["auc"] == pytest.approx(roc_auc_score(labels[:, k], scores[:, k]), abs=1e-5)
            assert entry["n_pos"] == int(labels[:, k].sum())
            checked += 1
    assert checked >= 2
