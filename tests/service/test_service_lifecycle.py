"""Lifespan: /readyz goes warming -> ready; shutdown during a build persists nothing; API key; metrics; logs."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.service.conftest import LiveServer


class SlowEmbedder:
    """Wraps the tiny CLIP runner; each image batch waits until the test releases it."""

    def __init__(self, inner, gate: threading.Event) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.gate = inner, gate
        self.version, self.dim = inner.version, inner.dim
        self.batches = 0

    def encode_images(self, batch: np.ndarray) -> np.ndarray:
        self.gate.wait(30)
        self.batches += 1
        return self.inner.encode_images(batch)


def _state(settings, gate: threading.Event):  # type: ignore[no-untyped-def]
    from radclip.engine.retrieval import Retriever
    from radclip.engine.study_index import StudyIndex, default_load_fn
    from radclip.service.state import build_state

    state = build_state(settings)
    assert not state.load_errors, state.load_errors
    slow = SlowEmbedder(state.clip, gate)
    state.index = StudyIndex(slow, database=state.registry.engine, root=settings.home / "index", batch_size=4,
                             load_fn=default_load_fn(state.clip.input_size))
    state.retriever = Retriever(state.index, text_embedder=state.text, image_embedder=state.clip)
    return state


def _settings(tmp_path: Path, tiny_triage_weights, tiny_clip_weights, tiny_corpus, **kw):  # type: ignore[no-untyped-def]
    from radclip.settings import load_settings

    return load_settings(home=tmp_path / "home", triage_model=str(tiny_triage_weights), clip_model=str(tiny_clip_weights),
                         corpus=tiny_corpus, **kw)  # fmt: skip


def test_readyz_reports_warming_then_ready_and_retrieve_waits(tmp_path, tiny_triage_weights, tiny_clip_weights, tiny_corpus) -> None:  # type: ignore[no-untyped-def]
    from radclip.service.app import create_app

    gate = threading.Event()
    settings = _settings(tmp_path, tiny_triage_weights, tiny_clip_weights, tiny_corpus)
    with LiveServer(create_app(settings, state=_state(settings, gate))) as server:
        warming = httpx.get(f"{server.url}/readyz").json()["index"]
        assert warming["state"] == "warming" and warming["total"] == 12 and warming["done"] == 0
        r = httpx.post(f"{server.url}/api/v1/retrieve", json={"query": "effusion", "top_k": 3})
        assert r.status_code == 503 and r.json()["index"]["state"] == "warming" and "retry" in r.json()["fix"]
        # Triage answers while the index warms.
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        gate.set()
        deadline = time.monotonic() + 60
        while httpx.get(f"{server.url}/readyz").json()["index"]["state"] == "warming" and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = httpx.get(f"{server.url}/readyz").json()["index"]
        assert ready["state"] == "ready" and ready["done"] == 12 and ready["progress"] == 1.0
        assert httpx.post(f"{server.url}/api/v1/retrieve", json={"query": "effusion", "top_k": 3}).status_code == 200
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'radclip_index_state{state="ready"} 1.0' in metrics
        assert 'radclip_request_seconds_count{endpoint="/api/v1/retrieve"}' in metrics


def test_shutdown_during_build_persists_nothing_and_warm_start_loads(tmp_path, tiny_triage_weights, tiny_clip_weights, tiny_corpus) -> None:  # type: ignore[no-untyped-def]
    from radclip.service.app import create_app

    gate = threading.Event()
    settings = _settings(tmp_path, tiny_triage_weights, tiny_clip_weights, tiny_corpus)
    state = _state(settings, gate)
    with LiveServer(create_app(settings, state=state)) as server:
        assert httpx.get(f"{server.url}/readyz").json()["index"]["state"] == "warming"
        state._stop.set()  # what lifespan shutdown does first; then release the stuck batch
        gate.set()
    assert state.warmup.state == "failed" and "cancelled" in state.warmup.detail
    index_dir = settings.home / "index"
    assert not list(index_dir.rglob("*.faiss")) if index_dir.exists() else True
    # A full build, then a warm start that embeds nothing.
    gate2 = threading.Event()
    gate2.set()
    first = _state(settings, gate2)
    with LiveServer(create_app(settings, state=first)):
        for _ in range(600):
            if first.warmup.state != "warming":
                break
            time.sleep(0.05)
    assert first.warmup.state == "ready" and first.index.embedder.batches == 3
    second = _state(settings, gate2)
    with LiveServer(create_app(settings, state=second)):
        for _ in range(600):
            if second.warmup.state != "warming":
                break
            time.sleep(0.05)
    assert second.warmup.state == "ready" and second.warmup.detail == "loaded" and second.index.embedder.batches == 0


def test_api_key_required_when_configured(tmp_path, tiny_triage_weights, tiny_clip_weights, tiny_corpus) -> None:  # type: ignore[no-untyped-def]
    from radclip.service.app import create_app

    settings = _settings(tmp_path, tiny_triage_weights, tiny_clip_weights, tiny_corpus, api_key="k-123", index_on_start=False)
    with LiveServer(create_app(settings)) as server:
        assert httpx.get(f"{server.url}/healthz").status_code == 200  # probes stay open
        r = httpx.get(f"{server.url}/api/v1/conditions")
        assert r.status_code == 401 and "X-API-Key" in r.json()["fix"]
        assert httpx.get(f"{server.url}/api/v1/conditions", headers={"X-API-Key": "wrong"}).status_code == 401
        assert httpx.get(f"{server.url}/api/v1/conditions", headers={"X-API-Key": "k-123"}).status_code == 200


def test_patient_identifiers_never_logged(live_server, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), np.uint8), mode="L").save(buf, format="PNG")
    patient = '{"resourceType": "Patient", "id": "MRN-99812", "name": [{"family": "Doe-Secret"}], "gender": "male"}'
    with caplog.at_level(logging.DEBUG):
        httpx.post(f"{live_server.url}/api/v1/screen", files={"file": ("x.png", buf.getvalue(), "image/png")}, data={"patient": patient}, timeout=60)
        httpx.post(f"{live_server.url}/api/v1/screen", files={"file": ("x.png", b"garbage", "image/png")}, data={"patient": patient}, timeout=60)
    text = caplog.text
    assert "MRN-99812" not in text and "Doe-Secret" not in text
