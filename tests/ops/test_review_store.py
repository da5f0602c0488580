"""The review store: what is kept per study and version round-trips, and retention deletes oldest first."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest

from radclip.lifecycle.review_store import DAY_S, NotStored, ReviewStore, ReviewStoreConfig

LABELS = ("Atelectasis", "Effusion", "Pneumothorax")


def _study(seed: int, size: int = 64) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """An image and two versions' maps; version b's maps are version a's reversed (1 - a), as a negated head gives."""
    rng = np.random.default_rng(seed)
    image = rng.random((size, size))
    a = np.stack([np.outer(np.linspace(0, 1, size), np.ones(size)) ** (k + 1) for k in range(len(LABELS))])
    return image, {"m@1": a, "m@2": 1.0 - a}


def test_round_trip_keeps_thumbnail_and_each_versions_maps(tmp_path: Path) -> None:
    from PIL import Image

    cfg = ReviewStoreConfig(map_size=16, thumb_size=32)
    store = ReviewStore.for_home(tmp_path, cfg)
    image, maps = _study(1)
    assert store.save("uid:1.2.3", image, maps, LABELS) is True
    assert store.save("uid:1.2.3", *_study(2), LABELS) is False  # first maps stay
    folder = next((tmp_path / "review").iterdir())
    assert "1.2.3" not in folder.name and sorted(p.name for p in folder.iterdir()) == [
        "maps.npz",
        "study.json",
        "thumb.png",
    ]

    got = store.load("uid:1.2.3")
    assert got.refs == ("m@1", "m@2") and got.labels == LABELS and got.maps.shape == (2, 3, 16, 16)
    # the thumbnail is the 2x2 box mean of the image, to uint8 precision
    box = image.reshape(32, 2, 32, 2).mean(axis=(1, 3))
    assert np.abs(got.thumbnail - box).max() <= 0.5 / 255 + 1e-6
    # stored maps: the 4x4 box mean, uint8; version 2 is 1 - version 1 to one grey level
    small = maps["m@1"].reshape(3, 16, 4, 16, 4).mean(axis=(2, 4))
    assert np.abs(got.maps[0] / 255.0 - small).max() <= 0.5 / 255 + 1e-6
    assert np.abs(got.maps[0].astype(int) + got.maps[1].astype(int) - 255).max() <= 1
    # drawn heat: normalised to [0, 1] at the thumbnail's size; the two versions are mirror images
    h1, h2 = got.heat("m@1", "effusion"), got.heat("m@2", "Effusion")
    assert (
        h1.shape == (32, 32)
        and h1.min() == pytest.approx(0, abs=1e-6)
        and h1.max() == pytest.approx(1, abs=1e-6)
    )
    assert np.abs(h1 + h2 - 1).max() < 0.02
    png1, png2 = (
        np.asarray(Image.open(io.BytesIO(store.overlay_png("uid:1.2.3", r, "Effusion"))))
        for r in ("m@1", "m@2")
    )
    assert png1.shape == (32, 32, 3) and png1.dtype == np.uint8
    assert np.abs(png1.astype(int) - png2.astype(int)).mean() > 20  # jet's blue end vs red end


def test_missing_study_version_or_finding_says_which(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path / "r", ReviewStoreConfig(map_size=8, thumb_size=16))
    with pytest.raises(NotStored, match="no heat maps kept for study 'sha256:ab'"):
        store.load("sha256:ab")
    store.save("k", *_study(3), LABELS)
    with pytest.raises(NotStored, match="kept: m@1, m@2"):
        store.overlay_png("k", "m@9", "Effusion")
    with pytest.raises(ValueError, match="did you mean 'Effusion'"):
        store.overlay_png("k", "m@1", "Efusion")


def test_retention_deletes_the_oldest_beyond_the_count_and_everything_past_the_age(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path, ReviewStoreConfig(max_studies=3, max_age_days=2, map_size=8, thumb_size=16))
    now = time.time()
    for i in range(5):  # one a minute: study 0 oldest
        store.save(f"s{i}", *_study(i), LABELS, now=now + 60 * i)
    assert len(store) == 3
    for gone in ("s0", "s1"):
        with pytest.raises(NotStored):
            store.load(gone)
    assert [store.load(f"s{i}").study_key for i in (2, 3, 4)] == ["s2", "s3", "s4"]
    # two and a half days later, a new study: the three older ones are past the age limit
    store.save("s5", *_study(5), LABELS, now=now + 2.5 * DAY_S)
    assert len(store) == 1 and store.load("s5").refs == ("m@1", "m@2")
    stale = tmp_path / ".tmp-cut-short"  # a write cut short by a crash
    stale.mkdir()
    assert store.prune(now + 10 * DAY_S) == 1 and len(store) == 0 and not stale.exists()


def test_config_refuses_unbounded_or_inconsistent_values() -> None:
    with pytest.raises(ValueError, match="max_studies"):
        ReviewStoreConfig(max_studies=0)
    with pytest.raises(ValueError, match="map_size"):
        ReviewStoreConfig(map_size=256, thumb_size=128)
