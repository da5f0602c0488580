"""Triage and explanation through a real uvicorn server on loopback, and the bad-input answers."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
from PIL import Image


def _png(size: int = 256, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    arr = (rng.random((size, size)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def test_healthz_and_readyz(live_server) -> None:  # type: ignore[no-untyped-def]
    assert httpx.get(f"{live_server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{live_server.url}/readyz").json()
    assert ready["models"]["triage"]["name"] == "tiny-triage"


def test_triage_scores_match_direct_model_call(live_server, tiny_triage_weights) -> None:  # type: ignore[no-untyped-def]
    import torch

    from radclip.io.contract import to_contract_tensor
    from radclip.io.loader import load_image
    from radclip.models.preprocess import to_model_input
    from radclip.models.registry import load_pretrained

    png = _png()
    r = httpx.post(f"{live_server.url}/api/v1/triage", content=png, headers={"content-type": "image/png"}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["findings"]) == 14
    probs = [f["probability"] for f in body["findings"]]
    assert probs == sorted(probs, reverse=True)
    model, card = load_pretrained(tiny_triage_weights)
    x = to_model_input(to_contract_tensor(load_image(png).pixels, 224), card.preprocessing)
    with torch.no_grad():
        logits = model(x)[0].double().numpy()
    served = {f["label"]: f for f in body["findings"]}
    for i, name in enumerate(card.labels):
        t = card.calibration["temperature"].get(name, 1.0)
        assert abs(served[name]["logit"] - logits[i]) < 1e-4
        assert abs(served[name]["probability"] - 1 / (1 + np.exp(-logits[i] / t))) < 1e-5


def test_explain_returns_overlay_png(live_server) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(f"{live_server.url}/api/v1/explain?label=Effusion", content=_png(), headers={"content-type": "image/png"}, timeout=60)
    assert r.status_code == 200, r.text
    import base64

    from radclip.io.contract import to_contract_tensor
    from radclip.io.loader import load_image

    img = Image.open(io.BytesIO(base64.b64decode(r.json()["overlay_png_base64"])))
    assert img.size == (224, 224) and img.mode == "RGB" and r.json()["cam_shape"] == [224, 224]
    # overlay = 0.6 * the uploaded image (at the contract size) + 0.4 * a colour in [0, 1]: solve for the colour
    grey = to_contract_tensor(load_image(_png()).pixels, 224)[0].astype(np.float64)
    colour = (np.asarray(img, np.float64) / 255 - 0.6 * grey[..., None]) / 0.4
    assert colour.min() > -0.01 and colour.max() < 1.01  # another image, or no blending, leaves [0, 1]
    assert np.abs(np.diff(colour, axis=2)).max() > 0.5  # the heat map is in colour, not grey


def _problem(r: httpx.Response, status: int) -> dict:  # type: ignore[type-arg]
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = json.loads(r.text)
    assert body["status"] == status and body["detail"] and body["fix"] and body["type"].startswith("https://")
    return body


def test_bad_inputs_get_problem_json(live_server) -> None:  # type: ignore[no-untyped-def]
    url = f"{live_server.url}/api/v1/triage"
    _problem(httpx.post(url, content=b"", headers={"content-type": "image/png"}), 400)
    _problem(httpx.post(url, content=b"hello", headers={"content-type": "text/plain"}), 415)
    body = _problem(httpx.post(url, content=b"this is not a dicom" * 20, headers={"content-type": "application/dicom"}), 415)
    assert "DICOM" in body["detail"] or "format" in body["detail"].lower()
    _problem(httpx.post(url, content=b"\0" * 3_000_000, headers={"content-type": "application/dicom"}), 413)
    _problem(httpx.post(f"{live_server.url}/api/v1/explain?label=Efusion", content=_png(), headers={"content-type": "image/png"}), 422)
    _problem(httpx.get(f"{live_server.url}/api/v1/nope"), 404)


def test_multipart_upload(live_server) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(f"{live_server.url}/api/v1/triage", files={"file": ("x.png", _png(), "image/png")}, timeout=60)
    assert r.status_code == 200, r.text
    _problem(httpx.post(f"{live_server.url}/api/v1/triage", files={"other": ("x.png", _png(), "image/png")}), 400)


def test_band_is_the_wilson_interval_of_the_validation_support() -> None:
    """The served band is the card's definition (docs/triage.md): Wilson interval on the bin's validation count."""
    import numpy as np

    from radclip.models.card import ModelCard
    from radclip.models.confidence import wilson_interval
    from radclip.runtime.triage_runner import TriageRunner

    card = ModelCard(name="x", architecture="a", version="0", task="triage", labels=["A", "B"],
                     calibration={"temperature": {"A": 2.0}, "val_bin_counts": [100, 50, 40, 30, 20, 10, 5, 4, 3, 2]})  # fmt: skip
    runner = TriageRunner(model=None, card=card)
    result = runner._result(np.array([0.0, 3.0]), None, 1.0)
    assert result.probs[0] == 0.5  # temperature 2 leaves a zero logit at 0.5
    assert tuple(result.band_low[:1]) + tuple(result.band_high[:1]) == wilson_interval(0.5, 10)
    p1 = 1 / (1 + np.exp(-3.0))
    assert (result.band_low[1], result.band_high[1]) == wilson_interval(p1, 2)  # 0.953 falls in the last bin
    assert result.band_low[1] < p1 < result.band_high[1]
