"""evaluate_zeroshot end to end on a synthetic manifest and a fake image-text model with a known answer."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from radclip.eval.prompt_sets import EVAL_PHRASES, eval_negative_prompts, eval_positive_prompts
from radclip.eval.zeroshot import evaluate_zeroshot
from radclip.io.labels import NIH_LABELS


class FakeClip:
    """Image embedding follows brightness; every positive prompt points to e0, every negative one to e1."""

    embed_dim = 4
    preprocessing = SimpleNamespace(input_size=32)

    def __init__(self) -> None:
        self.pos = {p for c in EVAL_PHRASES for p in eval_positive_prompts(c)}
        self.neg = {p for c in EVAL_PHRASES for p in eval_negative_prompts(c)}

    def encode_image(self, x, normalize=True):  # noqa: ANN001, ANN201
        import torch
        import torch.nn.functional as F

        m = x.float().mean(dim=(1, 2, 3))
        return F.normalize(torch.stack([m, 1 - m, torch.full_like(m, 0.2), torch.zeros_like(m)], 1), dim=-1)

    def encode_text(self, texts, normalize=True):  # noqa: ANN001, ANN201
        import torch

        rows = [
            [1.0, 0, 0, 0] if t in self.pos else [0, 1.0, 0, 0] if t in self.neg else [0, 0, 0, 1.0]
            for t in texts
        ]
        return torch.tensor(rows)


def _manifest(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root / "img").mkdir()
    rows = []

    def add(source: str, i: int, bright: bool, split: str = "test", **cols: object) -> None:
        name = f"{source}{i}"
        img = rng.integers(10, 40, (40, 40)).astype(np.uint8)
        if bright:
            img[5:35, 5:35] = 230
        Image.fromarray(img).save(root / "img" / f"{name}.png")
        base = {
            "image_id": name,
            "source": source,
            "path": f"img/{name}.png",
            "patient_id": f"{source}_{i // 2}",
        }
        rows.append({**base, "split": split, "finding": "", "no_finding": "", **cols})

    for i in range(16):  # Atelectasis = bright; the other labels random
        labels = {lab: float(rng.integers(0, 2)) for lab in NIH_LABELS}
        labels["Atelectasis"] = float(i % 2)
        add("nih", i, bool(i % 2), no_finding=float(i % 4 == 0), **labels)
    for i in range(12):  # pneumonia = bright
        add("kermany", i, bool(i % 2), finding="Pneumonia (viral)" if i % 2 else "No finding")
    for i in range(8):
        add("hannover", i, True, finding="COVID-19")
    add("nih", 99, True, split="train", **{lab: 1.0 for lab in NIH_LABELS})  # another split: left out
    path = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_two_names_counts_and_known_answers(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    out = evaluate_zeroshot(
        FakeClip(), str(manifest), str(tmp_path), "test", 50, "sources nih,iu,covid", None
    )
    pt = out["prompt_transfer"]
    assert pt["n_images"] == 16 and pt["n_patients"] == 8
    atel = pt["per_label"]["Atelectasis"]
    assert atel["auc"] == pytest.approx(1.0) and (atel["n_pos_images"], atel["n_pos_patients"]) == (8, 8)
    ped = out["zero_shot"]["pediatric_pneumonia"]
    assert ped["auc"] == pytest.approx(1.0) and (ped["n_pos_images"], ped["n_neg_images"]) == (6, 6)
    assert ped["n_pos_patients"] == 6 and ped["measurable"]
    other = out["prompt_transfer_from_notes"][
        "covid19_vs_covid_era_other"
    ]  # no non-COVID rows: reported, not measured
    assert other["auc"] is None and other["n_neg_images"] == 0 and not other["measurable"]
    covid = out["prompt_transfer_from_notes"]["covid19_vs_nih_no_finding"]
    assert (covid["n_pos_images"], covid["n_pos_patients"], covid["n_neg_images"]) == (8, 4, 4)
    assert "covid19_vs_nih_no_finding" not in out.get("zero_shot", {})
    assert out["prompt_set"]["name"] == "radclip-eval-prompts-v1"


def test_covid_is_zero_shot_for_a_model_without_notes(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    out = evaluate_zeroshot(FakeClip(), str(manifest), str(tmp_path), "test", 0, "sources nih,iu", None)
    assert set(out["zero_shot"]) == {
        "pediatric_pneumonia",
        "covid19_vs_nih_no_finding",
        "covid19_vs_covid_era_other",
    }
    assert "prompt_transfer_from_notes" not in out
