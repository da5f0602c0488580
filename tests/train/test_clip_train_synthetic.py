"""One synthetic run of ``radclip train clip`` through ``main(argv)`` (tiny towers, seconds), then a resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radclip.io.labels import NIH_LABELS

FINDINGS = ["Effusion", "Cardiomegaly", "Pneumothorax"]


def _write_data(root: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(30):
        source = "nih" if i < 18 else "covid"
        split = ["train", "train", "val"][i % 3]
        pix = (rng.random((40, 40)) * 255).astype(np.uint8)
        path = f"images/{source}_{i}.png"
        Image.fromarray(pix).save(root / path)
        row = {
            "image_id": f"im{i}",
            "source": source,
            "path": path,
            "patient_id": f"{source}_{i // 2}",
            "split": split,
        }
        finding = FINDINGS[i % 3]
        for lab in NIH_LABELS:
            row[lab] = "" if source != "nih" else str(int(lab == finding and i % 2 == 0))
        row["no_finding"] = "" if source != "nih" else str(int(i % 2 == 1))
        row["report"] = (
            ""
            if source == "nih"
            else f"Patient {i // 2}: chest film shows {finding.lower()}. No pneumothorax."
        )
        rows.append(row)
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    iu = root / "iu.csv"
    with iu.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["report_id", "report", "split"])
        writer.writeheader()
        for j, text in enumerate(
            [
                "Large right pleural effusion.",
                "Cardiomegaly. No effusion.",
                "Lungs are clear. Normal chest.",
                "Small apical pneumothorax.",
            ]
            * 3
        ):
            writer.writerow({"report_id": f"r{j}", "report": text, "split": "train"})
    return manifest, iu


@pytest.mark.parametrize("gradcache", [0, 5])
def test_synthetic_epoch_and_resume(tmp_path: Path, gradcache: int) -> None:
    from radclip.models.weights import load_state_dict
    from radclip.train.clip_trainer import main

    manifest, iu = _write_data(tmp_path / "data")
    out = tmp_path / "run"
    args = [
        "--out-dir",
        str(out),
        "--manifest",
        str(manifest),
        "--iu-reports",
        str(iu),
        "--model",
        "tiny",
        "--train-image-trunk",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "3",
        "--batch-size",
        "8",
        "--extra-texts",
        "4",
        "--lr",
        "1e-3",
        "--warmup-steps",
        "1",
        "--gradcache-chunk",
        str(gradcache),
        "--no-progress",
    ]
    assert main(args) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert {"loss", "semantic", "acc", "temperature", "lr"} <= set(log[0])
    assert any(
        {"paired", "pair_acc"} <= set(r) for r in log
    )  # steps with >= 2 report pairs add paired InfoNCE
    assert log[0]["temperature"] == pytest.approx(0.07, abs=1e-3)  # logged before the first update is applied
    assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in log)
    state = json.loads((out / "train_state.json").read_text())
    hist = state["history"][0]
    for key in (
        "i2t_R@1",
        "i2t_R@5",
        "i2t_R@10",
        "t2i_R@1",
        "t2i_R@5",
        "t2i_R@10",
        "matched_cosine",
        "zeroshot_mean_auc",
    ):
        assert key in hist
    assert 0.0 <= hist["i2t_R@1"] <= hist["i2t_R@5"] <= hist["i2t_R@10"] <= 1.0
    assert (out / "best.safetensors").is_file() and (out / "last.optim.safetensors").is_file()
    _check_card(out, manifest, state)
    if gradcache:
        return  # the resume path is exercised once, without gradient caching
    before = load_state_dict(out / "last.safetensors")

    assert (
        main([*args[: args.index("--epochs") + 1], "2", *args[args.index("--epochs") + 2 :], "--resume"]) == 0
    )
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]  # continued, not restarted
    after = load_state_dict(out / "last.safetensors")
    assert any(not np.allclose(before[k].numpy(), after[k].numpy()) for k in before)


def _check_card(out: Path, manifest: Path, state: dict) -> None:
    """The trainer's card loads the candidate as a model, names the data snapshot and the val choice."""
    import torch

    from radclip.io.manifest import data_snapshot
    from radclip.models.registry import load_pretrained
    from radclip.models.weights import load_state_dict

    card = json.loads((out / "best.card.json").read_text())
    assert card["metrics"]["data_snapshot"] == data_snapshot(manifest)
    assert card["metrics"]["selection"]["split"] == "val"
    assert card["metrics"]["selection"]["best_epoch"] == state["best_epoch"]
    model, _ = load_pretrained(str(out / "best.safetensors"))
    saved = load_state_dict(out / "best.safetensors")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
