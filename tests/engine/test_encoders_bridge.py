"""The one bridge into radclip.models: default_text/image_embedder wrap a real (tiny) image-text model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.fixture()
def tiny_clip(monkeypatch: pytest.MonkeyPatch):
    from radclip.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("medclip_tiny")
    card = SimpleNamespace(name="medclip-tiny-test", version="0.0.1", preprocessing=SimpleNamespace(input_size=32))
    monkeypatch.setattr("radclip.models.registry.load_pretrained", lambda name: (model, card))
    return model


def test_bridge_wraps_real_model(tiny_clip, sqlite_url: str) -> None:
    from radclip.engine.encoders import (
        ImageEmbedder,
        TextEmbedder,
        default_image_embedder,
        default_text_embedder,
    )
    from radclip.engine.registry import PromptRegistry
    from radclip.engine.screening import Screener

    text, image = default_text_embedder(), default_image_embedder()
    assert isinstance(text, TextEmbedder) and isinstance(image, ImageEmbedder)
    assert (text.version, text.dim, image.input_size) == ("medclip-tiny-test@0.0.1", 32, 32)
    t = text.encode_text(["left pleural effusion", "normal chest"])
    assert t.shape == (2, 32) and t.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    with torch.inference_mode():
        ref = tiny_clip.encode_text(["left pleural effusion"], normalize=True).numpy()
    np.testing.assert_allclose(t[:1], ref, atol=1e-6)
    imgs = np.random.default_rng(0).random((3, 1, 32, 32)).astype(np.float32)
    v = image.encode_images(imgs)
    assert v.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # Registry + screening run end to end on the real towers.
    reg = PromptRegistry(sqlite_url, text)
    reg.register("Effusion", ["pleural effusion", "blunted costophrenic angle"], category="pleural")
    reg.register("no_finding", ["normal chest x-ray", "clear lungs"], category="normal")
    res = Screener(reg, image_version=image.version).screen(v[0])
    names, mat = reg.embeddings_matrix()
    got = {f.name: f.cosine for f in res.findings}
    assert got == pytest.approx(dict(zip(names, (mat @ v[0]).tolist(), strict=True)), abs=1e-5)
