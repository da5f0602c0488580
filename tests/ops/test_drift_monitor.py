"""The drift reference file and the live drift monitor: golden values, refusals, and the Prometheus series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from radclip.engine.drift import mean_cosine_distance
from radclip.engine.drift_reference import (
    DriftReference,
    fit_drift_reference,
    load_drift_reference,
    sample_train_paths,
    save_drift_reference,
)
from radclip.engine.reference import ShippedArtifactError
from radclip.lifecycle.drift_monitor import DriftMonitor

SHA = "a" * 64


def _ref(dim: int = 8, axis: int = 0) -> DriftReference:
    return fit_drift_reference(np.tile(np.eye(dim)[axis] * 3.0, (20, 1)), SHA, "sha256:x", "nih:20")


def _value(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name, {"model": "m"})


def test_reference_round_trip_and_refusals(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    embs = rng.normal(size=(30, 8))
    ref = fit_drift_reference(embs, SHA, "sha256:snap", "nih:30")
    unit = embs / np.linalg.norm(embs, axis=1, keepdims=True)
    np.testing.assert_allclose(ref.mean, unit.mean(axis=0))  # mean of unit vectors, not of raw embeddings
    path = save_drift_reference(tmp_path / "m.drift.safetensors", ref)
    back = load_drift_reference(path, SHA)
    np.testing.assert_allclose(back.mean, ref.mean, atol=1e-7)
    assert (back.n, back.sources, back.data_snapshot) == (30, "nih:30", "sha256:snap")
    with pytest.raises(ShippedArtifactError, match="radclip monitor drift-reference"):
        load_drift_reference(path, "b" * 64)  # other weights
    with pytest.raises(ShippedArtifactError, match="no drift reference"):
        load_drift_reference(tmp_path / "missing.drift.safetensors", SHA)
    (tmp_path / "junk.drift.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ShippedArtifactError, match="not a drift reference"):
        load_drift_reference(tmp_path / "junk.drift.safetensors", SHA)
    with pytest.raises(ShippedArtifactError, match="at least 20"):
        fit_drift_reference(embs[:5], SHA, "", "")


def test_sample_reads_only_train_rows_and_is_bounded(tmp_path: Path) -> None:
    lines = ["path,source,split"] + [f"{s}/{sp}{i}.png,{s},{sp}" for s in ("nih", "covid", "kermany")
                                     for sp in ("train", "test", "val") for i in range(10)]  # fmt: skip
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    paths = sample_train_paths(manifest, {"nih": 4, "covid": 50})
    assert len(paths) == 14 and all("/train" in p for p in paths)
    assert sum(p.startswith("nih/") for p in paths) == 4 and not any(p.startswith("kermany/") for p in paths)
    assert paths == sample_train_paths(manifest, {"nih": 4, "covid": 50})  # deterministic
    with pytest.raises(ShippedArtifactError, match="no train rows of source 'hannover'"):
        sample_train_paths(manifest, {"hannover": 3})


def test_monitor_exports_the_rolling_distance_only_when_the_window_is_full() -> None:
    registry = CollectorRegistry()
    monitor = DriftMonitor("m", _ref(), window=4)
    registry.register(monitor)
    assert _value(registry, "radclip_embedding_drift_reference_loaded") == 1.0
    monitor.observe(np.tile(np.eye(8)[0], (3, 1)))
    assert _value(registry, "radclip_embedding_drift_window_fill") == 0.75
    assert _value(registry, "radclip_embedding_drift_cosine") is None  # no value from 3 studies
    assert monitor.status()["state"] == "filling"
    monitor.observe(np.eye(8)[1])  # window: 3 x e0 + 1 x e1
    expected = mean_cosine_distance(np.stack([np.eye(8)[0]] * 3 + [np.eye(8)[1]]), np.eye(8)[0])
    assert expected == pytest.approx(1 - 3 / np.sqrt(10))
    assert _value(registry, "radclip_embedding_drift_cosine") == pytest.approx(expected)
    monitor.observe(
        np.tile(np.eye(8)[1], (4, 1))
    )  # the window rolls over to e1 only: orthogonal to the reference
    assert _value(registry, "radclip_embedding_drift_cosine") == pytest.approx(1.0)
    status = monitor.status()
    assert status["state"] == "active" and status["cosine_distance"] == pytest.approx(1.0)


def test_missing_reference_or_bad_embedding_exports_no_value_and_never_raises() -> None:
    registry = CollectorRegistry()
    registry.register(DriftMonitor("m", None, "no drift reference is shipped for m"))
    text = generate_latest(registry).decode()
    assert 'radclip_embedding_drift_reference_loaded{model="m"} 0.0' in text
    assert "radclip_embedding_drift_cosine" not in text and "radclip_embedding_drift_window_fill" not in text
    monitor = DriftMonitor("m", _ref(), window=2)
    monitor.observe(np.ones(5))  # wrong dimension: drift switches off, the caller sees nothing
    assert not monitor.active and monitor.status()["state"] == "unavailable"
    assert "ValueError" in monitor.status()["reason"]
    monitor.observe(np.ones(8))  # and stays off quietly


def test_shipped_reference_matches_the_shipped_image_text_weights() -> None:
    from radclip.engine.drift_reference import drift_reference_path
    from radclip.models.registry import find_card

    card, card_file = find_card("radclip-medclip-mini")
    path = drift_reference_path(card_file, card.name)
    ref = load_drift_reference(
        path, card.weights_sha256
    )  # raises, naming the command, after a weights change
    assert (
        ref.n == 350 and ref.sources == "nih:300,covid:50" and ref.mean.shape == (card.config["embed_dim"],)
    )


def test_command_fits_the_train_sample_only_and_writes_a_loadable_reference(
    tmp_path: Path, tiny_clip: Path
) -> None:
    from tests.service.conftest import write_png

    from radclip.cli import main
    from radclip.engine.drift_reference import embed_paths
    from radclip.engine.encoders import default_image_embedder
    from radclip.models.registry import find_card

    rows = ["path,source,split"]
    for i in range(24):
        write_png(tmp_path / "img" / f"tr{i}.png", seed=i)
        rows.append(f"img/tr{i}.png,nih,train")
    rows += ["img/missing-test.png,nih,test", "img/missing-val.png,nih,val"]  # never opened: train rows only
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "ref.drift.safetensors"
    argv = [
        "monitor",
        "drift-reference",
        "--model",
        str(tiny_clip),
        "--manifest",
        str(tmp_path / "manifest.csv"),
    ]
    assert main([*argv, "--sample", "nih:22", "--out", str(out)]) == 0
    card, _ = find_card(tiny_clip)
    ref = load_drift_reference(out, card.weights_sha256)
    picked = sample_train_paths(tmp_path / "manifest.csv", {"nih": 22})
    embs = embed_paths(default_image_embedder(str(tiny_clip)), [tmp_path / p for p in picked])
    np.testing.assert_allclose(ref.mean, fit_drift_reference(embs, SHA, "", "").mean, atol=1e-6)
    assert ref.n == 22 and ref.sources == "nih:22" and ref.data_snapshot.startswith("sha256:")
    assert (
        main([*argv, "--sample", "nih:5", "--out", str(tmp_path / "small.safetensors")]) == 1
    )  # below 20 images
