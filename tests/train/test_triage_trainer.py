"""Triage training: masked BCE by hand, NaN gradients, overfitting, schedule, one tiny CLI run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from radclip.io.labels import NIH_LABELS
from radclip.models.triage import TriageConfig, TriageNet
from radclip.train.schedule import ModelEma, warmup_cosine
from radclip.train.triage_trainer import augment_batch, masked_bce


def write_synthetic_manifest(root: Path, n: int = 16, splits: tuple[str, ...] = ("train", "val"), size: int = 48) -> Path:
    """``n`` PNGs per split whose label 0 is 'bright square' and label 1 is random; NaN elsewhere sometimes."""
    rng = np.random.default_rng(0)
    rows = []
    (root / "images").mkdir(parents=True, exist_ok=True)
    for split in splits:
        for i in range(n):
            pos = i % 2
            img = rng.integers(20, 60, size=(size, size)).astype(np.uint8)
            if pos:
                img[10:30, 10:30] = 220
            name = f"{split}_{i}"
            Image.fromarray(img).save(root / "images" / f"{name}.png")
            labels = {lab: float(rng.integers(0, 2)) for lab in NIH_LABELS}
            labels[NIH_LABELS[0]] = float(pos)
            labels[NIH_LABELS[2]] = np.nan if i % 3 == 0 else labels[NIH_LABELS[2]]
            rows.append({"image_id": name, "source": "nih", "path": f"images/{name}.png", "patient_id": f"p{split}{i // 2}", "split": split, **labels, "no_finding": 0.0})
    manifest = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def test_masked_bce_matches_hand_computation_and_ignores_nan() -> None:
    logits = torch.tensor([[0.5, -1.0, 2.0], [0.0, 3.0, -0.5]], requires_grad=True)
    targets = torch.tensor([[1.0, float("nan"), 0.0], [0.0, 1.0, -1.0]])
    loss = masked_bce(logits, targets)

    def bce(z: float, y: float) -> float:
        p = 1 / (1 + math.exp(-z))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    want = (bce(0.5, 1) + bce(2.0, 0) + bce(0.0, 0) + bce(3.0, 1)) / 4
    assert loss.item() == pytest.approx(want, rel=1e-6)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad[0, 1] == 0 and logits.grad[1, 2] == 0, "unknown targets must get zero gradient"
    pw = masked_bce(logits.detach(), targets, pos_weight=torch.tensor([2.0, 2.0, 2.0]))
    assert pw.item() == pytest.approx((2 * bce(0.5, 1) + bce(2.0, 0) + bce(0.0, 0) + 2 * bce(3.0, 1)) / 4, rel=1e-6)


class _TinyTriage(TriageNet):
    def __init__(self) -> None:
        super().__init__(TriageConfig())
        self.features = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, stride=2, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU())
        self.num_features = 32
        self._make_head()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def test_overfits_a_fixed_tiny_batch() -> None:
    torch.manual_seed(0)
    model = _TinyTriage().train()
    x = torch.randn(4, 1, 32, 32)
    y = torch.tensor([[1.0, 0.0] * 7, [0.0, 1.0] * 7, [1.0, 1.0] * 7, [0.0, 0.0] * 7])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = masked_bce(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_warmup_cosine_and_ema() -> None:
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.01 + 0.99 * 0.5)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.01)
    lin = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    ema = ModelEma(lin, 0.9)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema.update(lin)
    assert ema.state["weight"].item() == pytest.approx(0.1)


def test_augment_keeps_shape_and_range() -> None:
    x = torch.rand(3, 1, 24, 24)
    out = augment_batch(x, torch.Generator().manual_seed(0), hflip=True)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, x)


def test_cli_tiny_run_writes_loadable_weights_and_card(tmp_path: Path) -> None:
    from radclip.cli import main
    from radclip.models.registry import load_pretrained

    manifest = write_synthetic_manifest(tmp_path / "data")
    out = tmp_path / "run"
    rc = main(["train", "triage", "--arch", "mobilenetv2_triage", "--out", str(out), "--manifest", str(manifest), "--size", "32",
               "--epochs", "1", "--max-steps", "2", "--batch-size", "8", "--no-pretrained", "--no-progress", "--name", "tiny"])  # fmt: skip
    assert rc == 0
    model, card = load_pretrained(out / "tiny.card.json")
    assert card.task == "triage" and card.preprocessing.input_size == 32 and card.labels == list(NIH_LABELS)
    temps = card.calibration["temperature"]
    assert set(temps) == set(NIH_LABELS) and all(0.05 <= t <= 20 for t in temps.values())
    log = json.loads((out / "train_log.json").read_text())
    assert log["steps"] == 2 and log["n_train"] == 16
    x = torch.rand(1, 1, 32, 32)
    assert model.predict(x).logits.shape == (1, 14)


def test_sample_weights_scale_each_image_and_zero_equals_leaving_it_out() -> None:
    torch.manual_seed(1)
    logits = torch.randn(4, 14)
    targets = torch.randint(0, 2, (4, 14)).float()
    targets[1, 3] = float("nan")
    assert masked_bce(logits, targets, sample_weight=torch.ones(4)) == pytest.approx(float(masked_bce(logits, targets)), abs=1e-6)
    dropped = masked_bce(logits, targets, sample_weight=torch.tensor([1.0, 0.0, 1.0, 1.0]))
    assert float(dropped) == pytest.approx(float(masked_bce(logits[[0, 2, 3]], targets[[0, 2, 3]])), abs=1e-6)
    # a weight of 0.5 on image 0 counts it as half an image in both the sum and the normaliser
    w = torch.tensor([0.5, 1.0, 1.0, 1.0])
    per = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.nan_to_num(targets), reduction="none")
    known = ~torch.isnan(targets)
    want = (per * known * w[:, None]).sum() / (known * w[:, None]).sum()
    assert float(masked_bce(logits, targets, sample_weight=w)) == pytest.approx(float(want), abs=1e-6)


def test_low_res_copies_are_found_by_original_width_and_dropped_or_down_weighted(tmp_path: Path) -> None:
    from radclip.train.triage_trainer import (
        TriageTrainConfig,
        _datasets,
        _sample_weights,
        command_line,
        low_res_mask,
    )

    manifest = write_synthetic_manifest(tmp_path / "data", n=8)
    frame = pd.read_csv(manifest)
    frame["orig_width"] = [64 if i % 4 == 0 else 1024 for i in range(len(frame))]
    frame.loc[1, "orig_width"] = np.nan  # unknown width counts as full resolution
    frame.to_csv(manifest, index=False)
    assert low_res_mask(frame, 64).tolist() == [i % 4 == 0 for i in range(len(frame))]
    assert not low_res_mask(frame.drop(columns="orig_width"), 64).any()
    keep_all, _ = _datasets(TriageTrainConfig(out_dir=tmp_path, manifest=manifest, size=32))
    dropped, _ = _datasets(TriageTrainConfig(out_dir=tmp_path, manifest=manifest, size=32, low_res_weight=0.0))
    assert len(keep_all) == 8 and len(dropped) == 6  # train rows 0 and 4 are the 64 px copies
    cfg = TriageTrainConfig(out_dir=tmp_path, manifest=manifest, low_res_weight=0.3, channels_last=True)
    weights = _sample_weights(cfg, keep_all.dataset.frame)
    assert weights is not None and weights["train_0"] == 0.3 and weights["train_1"] == 1.0
    assert _sample_weights(TriageTrainConfig(out_dir=tmp_path), keep_all.dataset.frame) is None
    assert "--low-res-weight 0.3" in command_line(cfg) and "--channels-last" in command_line(cfg)


def test_calibrate_triage_refits_the_card_on_val_and_refuses_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from radclip.cli import main
    from radclip.eval.calibration import calibration_from_card
    from radclip.models.card import ModelCard

    manifest = write_synthetic_manifest(tmp_path / "data", n=24)
    out = tmp_path / "run"
    assert main(["train", "triage", "--out", str(out), "--manifest", str(manifest), "--size", "32", "--epochs", "1", "--max-steps", "1",
                 "--batch-size", "8", "--no-pretrained", "--no-progress", "--name", "tiny", "--pos-weight", "auto"]) == 0  # fmt: skip
    card_path = out / "tiny.card.json"
    trained = ModelCard.load(card_path)
    assert set(trained.calibration["bias"]) == set(NIH_LABELS) and "prior_shift" in trained.calibration  # the trainer fits the same map
    capsys.readouterr()
    assert main(["calibrate", "triage", "--model", str(card_path), "--manifest", str(manifest), "--split", "test"]) == 2
    assert "never on the test split" in capsys.readouterr().out
    card_path.write_text(json.dumps({**json.loads(card_path.read_text()), "calibration": {}}))  # as if shipped uncalibrated
    assert main(["calibrate", "triage", "--model", str(card_path), "--manifest", str(manifest), "--compare"]) == 0
    summary = json.loads(capsys.readouterr().out)
    card = ModelCard.load(card_path)
    cal = calibration_from_card(card)
    assert cal is not None and np.all(cal.temperature > 0)
    assert card.calibration["selection"]["prior shift + Platt"]["ece_per_label_mean"] == summary["cross_validated"]["prior shift + Platt"]["ece_per_label_mean"]
    assert sum(card.calibration["val_bin_counts"]) == int(np.isfinite(pd.read_csv(manifest).query("split == 'val'")[list(NIH_LABELS)].to_numpy()).sum())
