"""Drift and image-encoding latency in the running service: fed by /screen, exported on /metrics, reported on /readyz."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from tests.ops.ops_helpers import SHIPPED, png

from radclip.engine.drift import mean_cosine_distance
from radclip.engine.drift_reference import DRIFT_SUFFIX, fit_drift_reference, save_drift_reference
from radclip.lifecycle.drift_monitor import DRIFT_WINDOW


def _clip_copy(tiny_clip: Path, dest: Path) -> Path:
    dest.mkdir()
    for f in (tiny_clip, tiny_clip.with_name("tiny-clip.card.json")):
        shutil.copy(f, dest / f.name)
    return dest / tiny_clip.name


def _client(tmp_path: Path, clip: Path) -> TestClient:
    from radclip.service.app import create_app
    from radclip.settings import load_settings

    settings = load_settings(home=tmp_path / "home", triage_model=SHIPPED, clip_model=str(clip), backend="pytorch",
                             index_on_start=False, corpus=tmp_path / "none")  # fmt: skip
    return TestClient(create_app(settings))


def _metric(text: str, name: str, labels: str) -> float | None:
    m = re.search(rf"^{name}\{{{labels}\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_screen_feeds_drift_and_clip_image_latency(tmp_path: Path, tiny_clip: Path) -> None:
    from radclip.models.registry import find_card

    clip = _clip_copy(tiny_clip, tmp_path / "clip")
    card, _ = find_card(clip)
    reference = np.random.default_rng(1).normal(size=(40, card.config["embed_dim"]))
    shipped = fit_drift_reference(reference, card.weights_sha256, "", "test")
    save_drift_reference(clip.with_name(f"tiny-clip{DRIFT_SUFFIX}"), shipped)
    with _client(tmp_path, clip) as client:
        embeddings = []
        for seed in range(DRIFT_WINDOW + 3):
            r = client.post("/api/v1/screen", content=png(seed), headers={"Content-Type": "image/png"})
            assert r.status_code == 200, r.text
            embeddings.append(r.json()["embedding"])
            if seed == 0:
                text = client.get("/metrics").text
                assert (
                    _metric(text, "radclip_inference_seconds_count", 'backend="pytorch",model="clip-image"')
                    == 1.0
                )
                assert "radclip_embedding_drift_cosine{" not in text  # one study: no drift value yet
                assert _metric(
                    text, "radclip_embedding_drift_window_fill", 'model="tiny-clip"'
                ) == pytest.approx(1 / DRIFT_WINDOW)
        text, ready = client.get("/metrics").text, client.get("/readyz").json()["drift"]
    # the served embeddings' rolling mean against the shipped mean, recomputed from the responses
    expected = mean_cosine_distance(np.array(embeddings[-DRIFT_WINDOW:]), shipped.mean)
    assert _metric(text, "radclip_embedding_drift_cosine", 'model="tiny-clip"') == pytest.approx(
        expected, abs=1e-5
    )
    assert _metric(text, "radclip_embedding_drift_window_fill", 'model="tiny-clip"') == 1.0
    assert (
        _metric(text, "radclip_inference_seconds_count", 'backend="pytorch",model="clip-image"')
        == DRIFT_WINDOW + 3
    )
    assert (
        ready["state"] == "active"
        and ready["window"] == DRIFT_WINDOW
        and ready["studies_in_window"] == DRIFT_WINDOW
    )
    assert ready["cosine_distance"] == pytest.approx(expected, abs=1e-5) and ready["reference"]["n"] == 40


@pytest.mark.parametrize("kind", ["missing", "other-weights"])
def test_missing_or_stale_reference_is_reported_and_serving_continues(
    tmp_path: Path, tiny_clip: Path, kind: str
) -> None:
    from radclip.models.registry import find_card

    clip = _clip_copy(tiny_clip, tmp_path / "clip")
    if kind == "other-weights":
        dim = find_card(clip)[0].config["embed_dim"]
        save_drift_reference(
            clip.with_name(f"tiny-clip{DRIFT_SUFFIX}"),
            fit_drift_reference(np.ones((30, dim)), "0" * 64, "", "test"),
        )
    with _client(tmp_path, clip) as client:
        for seed in range(DRIFT_WINDOW):
            assert (
                client.post(
                    "/api/v1/screen", content=png(seed), headers={"Content-Type": "image/png"}
                ).status_code
                == 200
            )
        text, ready = client.get("/metrics").text, client.get("/readyz").json()
    assert "radclip_embedding_drift_cosine{" not in text
    assert _metric(text, "radclip_embedding_drift_reference_loaded", 'model="tiny-clip"') == 0.0
    assert (
        ready["drift"]["state"] == "unavailable"
        and "radclip monitor drift-reference" in ready["drift"]["reason"]
    )
    assert str(tmp_path) not in ready["drift"]["reason"]  # /readyz never shows server paths
    assert ready["status"] == "ready"  # a monitoring gap, not a degraded service
