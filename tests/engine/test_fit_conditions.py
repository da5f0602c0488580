"""Calibrations fitted from a labelled manifest split are stored and then used by a fresh screener."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from engine_fakes import HashingTextEmbedder, ProjectionImageEmbedder
from PIL import Image

from radclip.engine.fit_conditions import fit_from_manifest
from radclip.engine.registry import PromptRegistry
from radclip.engine.screening import Screener
from radclip.io.labels import NIH_LABELS


def _manifest(tmp_path: Path, n: int = 60) -> Path:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(n):
        positive = i % 2 == 0  # Effusion-positive images are bright at the bottom: the fake embedder can see it
        arr = (rng.random((64, 64)) * 80).astype(np.uint8)
        if positive:
            arr[40:, :] = 230
        (tmp_path / "img").mkdir(exist_ok=True)
        Image.fromarray(arr, mode="L").save(tmp_path / "img" / f"{i}.png")
        labels = {lab: 0.0 for lab in NIH_LABELS} | {"Effusion": 1.0 if positive else 0.0}
        rows.append({"image_id": f"i{i}", "source": "nih", "path": f"img/{i}.png", "patient_id": f"p{i}", "split": "val",
                     **labels, "no_finding": 0.0 if positive else 1.0, "report": "", "age": 50, "sex": "F", "view": "PA"})  # fmt: skip
    rows.append({"image_id": "covid1", "source": "covid", "path": "img/0.png", "patient_id": "c1", "split": "val",
                 **{lab: np.nan for lab in NIH_LABELS}, "no_finding": np.nan, "report": "note", "age": 40, "sex": "M", "view": "AP"})  # fmt: skip
    path = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_fit_from_manifest_persists_calibrations_a_new_screener_uses(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    text, image = HashingTextEmbedder(), ProjectionImageEmbedder()
    registry = PromptRegistry(url, text)
    registry.register("Effusion", ["pleural effusion", "fluid in the pleural space"], category="pleural")
    registry.register("no_finding", ["normal chest radiograph", "no acute cardiopulmonary abnormality"], category="other")
    registry.register("rib_fracture", ["rib fracture", "fractured rib"], category="osseous")
    screener = Screener(registry, image_version=image.version, text_version=text.version)
    fits = fit_from_manifest(screener, image, _manifest(tmp_path), tmp_path, split="val", size=64)
    assert set(fits) == {"Effusion", "no_finding"}  # rib_fracture has no label column: stays uncalibrated
    assert (fits["Effusion"].n_pos, fits["Effusion"].n_neg) == (30, 30)  # the covid row (no labels) is not used
    fresh = Screener(PromptRegistry(url, text), image_version=image.version, text_version=text.version)
    _, _, _, calibrated = fresh.score(np.ones((1, image.dim), np.float32) / np.sqrt(image.dim))
    names = fresh.matrix().names
    assert dict(zip(names, calibrated.tolist(), strict=True)) == {"Effusion": True, "no_finding": True, "rib_fracture": False}
    other_model = Screener(PromptRegistry(url, text), image_version="another-image@2", text_version=text.version)
    assert not other_model.score(np.ones((1, image.dim), np.float32))[3].any()  # fits are keyed by model version
