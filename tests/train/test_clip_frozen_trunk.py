"""A frozen image trunk (or frozen prefix) is bit-identical after training, BatchNorm buffers included.

Regression: the trunk was built in train mode and the feature cache ran the frozen trunk before the
first ``model.train()``, so frozen BatchNorm layers used batch statistics and updated their running
mean/var (``num_batches_tracked`` +1 per cache batch): the shipped trunk drifted from its init and the
cached training features differed from what the served model computes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.train.test_clip_train_synthetic import _write_data

from radclip.train.clip_trainer import ClipTrainConfig, build_model


def _init_file(path: Path) -> dict[str, torch.Tensor]:
    """A tiny-CNN trunk with random weights and non-trivial BN buffers, saved as ``features.*``."""
    from radclip.models.weights import save_state_dict

    torch.manual_seed(3)
    model = build_model(ClipTrainConfig(out_dir="", model="tiny", vision_init="none"))
    state = {}
    for k, v in model.visual.trunk.features.state_dict().items():
        if k.endswith("running_mean"):
            v = torch.randn_like(v) * 0.1
        elif k.endswith("running_var"):
            v = torch.rand_like(v) + 0.5
        elif k.endswith("num_batches_tracked"):
            v = torch.tensor(1234)
        state[f"features.{k}"] = v.clone()
    save_state_dict(state, path)
    return state


def _args(manifest: Path, iu: Path, out: Path, init: Path, cache: Path) -> list[str]:
    return [
        "--out-dir",
        str(out),
        "--manifest",
        str(manifest),
        "--iu-reports",
        str(iu),
        "--model",
        "tiny",
        "--vision-init",
        str(init),
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "8",
        "--extra-texts",
        "4",
        "--lr",
        "1e-2",
        "--warmup-steps",
        "1",
        "--feature-cache",
        str(cache),
        "--no-progress",
    ]


@pytest.mark.parametrize("trainable_blocks", [0, 3])
def test_frozen_trunk_unchanged_by_training(tmp_path: Path, trainable_blocks: int) -> None:
    from radclip.models.weights import load_state_dict
    from radclip.train.clip_trainer import main

    manifest, iu = _write_data(tmp_path / "data")
    init = _init_file(tmp_path / "init.safetensors")
    out = tmp_path / "run"
    args = _args(manifest, iu, out, tmp_path / "init.safetensors", tmp_path / "cache")
    assert main([*args, "--trainable-blocks", str(trainable_blocks)]) == 0
    n_layers = 12  # tiny CNN: 4 x (conv, bn, relu)
    n_frozen = n_layers - trainable_blocks
    for stem in ("last", "best"):
        got = load_state_dict(out / f"{stem}.safetensors")
        frozen = {k: v for k, v in init.items() if int(k.split(".")[1]) < n_frozen}
        assert any(k.endswith("running_var") for k in frozen)
        for key, want in frozen.items():
            assert torch.equal(got[f"visual.trunk.{key}"], want), f"{stem}: frozen {key} changed"
    if trainable_blocks:  # the trainable suffix did train (its conv weight moved)
        last = load_state_dict(out / "last.safetensors")
        assert not torch.equal(last["visual.trunk.features.9.weight"], init["features.9.weight"])


def test_cached_features_equal_served_model(tmp_path: Path) -> None:
    """Cached frozen-trunk features = the eval-mode model's features (what serving computes)."""
    from radclip.train.clip_data import FeatureBank, build_sources

    manifest, iu = _write_data(tmp_path / "data")
    _init_file(tmp_path / "init.safetensors")
    cfg = ClipTrainConfig(out_dir="", model="tiny", vision_init=str(tmp_path / "init.safetensors"))
    model = build_model(cfg)  # a new module: nn.Module starts in train mode
    served = build_model(cfg).eval()
    src = build_sources(manifest, manifest.parent, iu, "train", ("nih", "iu", "covid"), 32)
    before = {k: v.clone() for k, v in model.visual.trunk.state_dict().items()}
    bank = FeatureBank(model, cache_dir=tmp_path / "cache")
    cached = bank._frozen_images("train", src.images)
    model.train()
    bank.image_features("train", src.images, np.arange(len(src.images)))
    after = model.visual.trunk.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with torch.no_grad():
        want = served.image_features(torch.from_numpy(src.images))
    assert torch.equal(cached, want)
