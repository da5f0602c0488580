"""ManifestDataset / PairDataset on synthetic PNGs and on a few real shared images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from radclip.io.contract import to_contract_tensor
from radclip.io.datasets import ManifestDataset, PairDataset
from radclip.io.labels import NIH_LABELS
from radclip.io.manifest import ManifestError, read_manifest


def _synthetic(tmp_path: Path, n: int = 6) -> tuple[pd.DataFrame, Path]:
    root = tmp_path / "cxr"
    (root / "images").mkdir(parents=True)
    rows = []
    rng = np.random.default_rng(0)
    for i in range(n):
        arr = rng.integers(0, 256, size=(40, 60), dtype=np.uint8)
        Image.fromarray(arr, mode="L").save(root / "images" / f"im{i}.png")
        labels = {name: float(i % 2) if i < 4 else np.nan for name in NIH_LABELS}
        rows.append({
            "image_id": f"im{i}", "source": "nih" if i < 4 else "covid", "path": f"images/im{i}.png",
            "patient_id": f"p{i // 2}", "split": ["train", "val", "test"][i % 3], **labels,
            "no_finding": 1.0 - (i % 2) if i < 4 else np.nan, "report": "" if i % 2 else f"report {i}",
            "age": "50" if i else "", "sex": "F" if i % 2 else "", "view": "PA",
        })
    return pd.DataFrame(rows), root


def test_items_follow_the_contract(tmp_path: Path) -> None:
    frame, root = _synthetic(tmp_path)
    ds = ManifestDataset(frame, root, size=32)
    assert len(ds) == 6
    item = ds[1]
    assert item["image"].shape == (1, 32, 32) and item["image"].dtype == np.float32
    raw = np.asarray(Image.open(root / "images" / "im1.png"), dtype=np.float32) / 255.0
    np.testing.assert_allclose(item["image"], to_contract_tensor(raw, 32), atol=1e-6)
    assert item["labels"].shape == (14,) and item["labels"].dtype == np.float32
    assert item["labels"][0] == 1.0 and item["no_finding"] == 0.0
    covid = ds[4]
    assert np.isnan(covid["labels"]).all() and np.isnan(covid["no_finding"])
    assert ds[0]["sex"] == "" and np.isnan(ds[0]["age"]) and ds[1]["age"] == 50.0
    assert ds[-1]["image_id"] == "im5"
    with pytest.raises(IndexError):
        ds[6]
    m = ds.labels_matrix()
    assert m.shape == (6, 14) and np.isnan(m[4:]).all() and np.nansum(m) == 2 * 14


def test_split_source_filters_and_pairs(tmp_path: Path) -> None:
    frame, root = _synthetic(tmp_path)
    assert list(ManifestDataset(frame, root, split="train").frame["image_id"]) == ["im0", "im3"]
    assert len(ManifestDataset(frame, root, split=["train", "val"])) == 4
    assert list(ManifestDataset(frame, root, sources=["covid"]).frame["image_id"]) == ["im4", "im5"]
    pairs = PairDataset(frame, root)
    assert list(pairs.frame["image_id"]) == ["im0", "im2", "im4"]
    assert all(pairs[i]["report"] for i in range(len(pairs)))
    with pytest.raises(ManifestError, match="split"):
        ManifestDataset(frame, root, split="training")
    with pytest.raises(ManifestError, match="source"):
        ManifestDataset(frame, root, sources=["chexpert"])


def test_blank_split_rows_are_usable_in_every_split(tmp_path: Path) -> None:
    frame, root = _synthetic(tmp_path)
    frame = frame.drop(columns=["split"])
    assert len(ManifestDataset(frame, root, split="test")) == 6


def test_missing_image_and_bad_root(tmp_path: Path) -> None:
    frame, root = _synthetic(tmp_path)
    (root / "images" / "im3.png").unlink()
    with pytest.raises(ManifestError, match="1 image file"):
        ManifestDataset(frame, root)
    with pytest.raises(ManifestError, match="not a folder"):
        ManifestDataset(frame, tmp_path / "nowhere")


def test_cache_and_transform(tmp_path: Path) -> None:
    frame, root = _synthetic(tmp_path)
    calls: list[float] = []

    def flip(x: np.ndarray) -> np.ndarray:
        calls.append(float(x.sum()))
        x[...] = x[:, :, ::-1].copy()  # in place: must not corrupt the cache
        return x

    ds = ManifestDataset(frame, root, size=16, transform=flip, cache=True)
    a, b = ds[2]["image"], ds[2]["image"]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, ds.image(2)[:, :, ::-1])
    assert len(ds._cache) == 1 and calls[0] == pytest.approx(calls[1])
    bad = ManifestDataset(frame, root, size=16, transform=lambda x: x[0])
    with pytest.raises(ValueError, match="contract shape"):
        bad[0]


def test_dataloader_collates_items(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    frame, root = _synthetic(tmp_path)
    loader = torch.utils.data.DataLoader(ManifestDataset(frame, root, size=16), batch_size=3)
    batch = next(iter(loader))
    assert batch["image"].shape == (3, 1, 16, 16) and batch["labels"].shape == (3, 14)
    assert batch["image_id"] == ["im0", "im1", "im2"]


def test_real_nih_train_split(cxr_manifest: Path) -> None:
    root = cxr_manifest.parent
    frame = read_manifest(cxr_manifest)
    ds = ManifestDataset(frame, root, split="train", sources=["nih"])
    assert len(ds) == int(((frame.source == "nih") & (frame.split == "train")).sum()) > 0
    np.testing.assert_array_equal(ds.labels_matrix().sum(0), frame.loc[(frame.source == "nih") & (frame.split == "train"), list(NIH_LABELS)].sum().to_numpy())
    item = ds[0]
    assert item["image"].shape == (1, 224, 224) and 0.0 <= item["image"].min() < item["image"].max() <= 1.0
    pairs = PairDataset(cxr_manifest, root, split="train")
    assert len(pairs) == int(((frame.split == "train") & (frame.report != "")).sum())
    assert set(pairs.frame["source"]) <= {"covid", "figure1"}
