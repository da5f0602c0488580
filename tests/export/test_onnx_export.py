"""ONNX export: parity with PyTorch, dynamic batch, eval-mode guard, verified manifests, ORT serving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from radclip.export import onnx_export as ox
from radclip.export.parity import check_triage
from radclip.models.card import ModelCard, Preprocessing
from radclip.models.registry import create_model
from radclip.runtime.onnx_backend import OnnxTriageRunner, find_exports, session
from radclip.runtime.triage_runner import TriageRunner


@pytest.fixture(scope="module")
def triage_model() -> tuple[torch.nn.Module, ModelCard]:
    torch.manual_seed(0)
    model = create_model("mobilenetv2_triage").eval()
    # Non-trivial batch-norm statistics, so a graph exported in training mode would differ.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    card = ModelCard(name="t-triage", architecture="mobilenetv2_triage", version="0", task="triage",
                     labels=["a"] * 14, preprocessing=Preprocessing(), weights_sha256="abc")  # fmt: skip
    return model, card


def test_triage_export_matches_pytorch_at_other_batch_sizes(triage_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, card = triage_model
    exported = ox.export_triage(model, card, tmp_path)
    for batch in (1, 3):
        images = np.random.default_rng(batch).random((batch, 1, 224, 224), dtype=np.float32)
        report = check_triage(model, card, exported.path, images)
        assert report.max_abs_diff <= 1e-4 and report.cam_corr >= 0.999
    logits, features, cams = session(exported.path).run(None, {"image": images})
    assert features.shape == (3, 1280, 7, 7) and cams.shape == (3, 14, 7, 7)
    # The CAM's spatial mean is the logit (GAP + linear head): the map is from the pre-pooling features.
    np.testing.assert_allclose(cams.mean(axis=(2, 3)), logits, atol=1e-4)


def test_export_refuses_a_wrapper_in_training_mode(triage_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, card = triage_model
    graph = ox.TriageGraph(model, card.preprocessing).train()
    with pytest.raises(RuntimeError, match="training mode"):
        ox._check_eval(graph)
    model.eval()


def test_manifest_lists_only_verified_exports(triage_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, card = triage_model
    exported = ox.export_triage(model, card, tmp_path)
    ox.write_manifest(tmp_path, [exported])
    assert find_exports(tmp_path, card) == {"triage": exported.path}
    other = ModelCard(name=card.name, architecture=card.architecture, version="1", task="triage", weights_sha256="different")
    assert find_exports(tmp_path, other) == {}  # retrained weights: the old export is stale
    with open(exported.path, "ab") as fh:
        fh.write(b"corrupt")
    assert find_exports(tmp_path, card) == {}


def test_onnx_runner_matches_pytorch_runner(triage_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, card = triage_model
    card.labels = [f"L{i}" for i in range(14)]
    card.calibration = {"temperature": {"L0": 1.7}, "val_bin_counts": [50, 20, 10, 5, 5, 5, 5, 5, 5, 5]}
    exported = ox.export_triage(model, card, tmp_path)
    x = np.random.default_rng(7).random((1, 224, 224), dtype=np.float32)
    torch_runner, ort_runner = TriageRunner(model, card), OnnxTriageRunner(card, exported.path)
    a, b = torch_runner.run(x), ort_runner.run(x)
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)
    np.testing.assert_allclose(a.band_low, b.band_low, atol=1e-5)
    cam_a, cam_b = torch_runner.cam(a, "L3"), ort_runner.cam(b, "L3")
    assert cam_a.shape == cam_b.shape == (224, 224)
    assert np.corrcoef(cam_a.ravel(), cam_b.ravel())[0, 1] > 0.999
