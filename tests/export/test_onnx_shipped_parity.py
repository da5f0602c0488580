"""The shipped models through ONNX Runtime on the real shared test split: same outputs, same AUCs.

Exports both embedded defaults (parity-checked on real NIH test images inside ``export_and_check``:
max |Δ| ≤ 1e-4 on logits and embeddings, CAM r ≥ 0.999), then scores the whole NIH test split with
both backends and requires triage and zero-shot mean AUC to agree within 0.002.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from radclip.io.labels import NIH_LABELS

AUC_TOLERANCE = 0.002


def _mean_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from radclip.eval.zeroshot import mean_measurable_auc

    value = mean_measurable_auc(labels, scores)
    assert value is not None
    return value


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    from radclip.export.parity import export_and_check
    from radclip.models.registry import list_shipped
    from radclip.settings import get_settings

    s = get_settings()
    if not {s.triage_model, s.clip_model} <= set(list_shipped()):
        pytest.skip("shipped models not present")
    out = tmp_path_factory.mktemp("export")
    lines = [line for role, name in (("triage", s.triage_model), ("clip", s.clip_model)) for line in export_and_check(role, name, out)]
    assert sum("parity" in line for line in lines) == 3  # triage, clip-image, clip-text all checked
    return out


@pytest.fixture(scope="module")
def test_split(data_root: Path):  # type: ignore[no-untyped-def]
    from radclip.io.datasets import ManifestDataset

    return ManifestDataset(data_root / "cxr" / "manifest.csv", data_root / "cxr", split="test", sources=["nih"], size=224)


def _images(ds, size: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    from radclip.io.contract import to_contract_tensor
    from radclip.io.datasets import load_pixels

    return np.stack([to_contract_tensor(load_pixels(ds.images_root / p), size) for p in ds.frame["path"]])


def test_triage_auc_equal_under_onnxruntime(exported: Path, test_split) -> None:  # type: ignore[no-untyped-def]
    from radclip.models.preprocess import to_model_input
    from radclip.models.registry import find_card, load_pretrained
    from radclip.runtime.onnx_backend import find_exports, session

    model, card = load_pretrained(find_card("radclip-mobilenetv2-nih")[1])
    images = _images(test_split, card.preprocessing.input_size)
    with torch.inference_mode():
        ref = model(to_model_input(torch.from_numpy(images), card.preprocessing)).numpy()
    ort = session(find_exports(exported, card)["triage"]).run(None, {"image": images})[0]
    assert np.abs(ort - ref).max() <= 1e-4
    labels = test_split.labels_matrix()
    assert abs(_mean_auc(labels, ort) - _mean_auc(labels, ref)) <= AUC_TOLERANCE


def test_zeroshot_auc_equal_under_onnxruntime(exported: Path, test_split) -> None:  # type: ignore[no-untyped-def]
    from radclip.eval.zeroshot import class_embeddings, zeroshot_scores
    from radclip.models.registry import find_card, load_pretrained
    from radclip.runtime.clip_runner import ClipRunner
    from radclip.runtime.onnx_backend import OnnxClipRunner, find_exports

    model, card = load_pretrained(find_card("radclip-medclip-mini")[1])
    files = find_exports(exported, card)
    torch_runner, ort_runner = ClipRunner(model, card), OnnxClipRunner(card, files["clip-image"], files["clip-text"])
    images = _images(test_split, torch_runner.input_size)
    labels = test_split.labels_matrix()
    aucs = []
    for runner in (torch_runner, ort_runner):
        img = runner.encode_images(images)
        pos, neg = class_embeddings(runner.encode_text, list(NIH_LABELS))
        aucs.append(_mean_auc(labels, zeroshot_scores(img, pos, neg)))
    np.testing.assert_allclose(ort_runner.encode_images(images[:4]), torch_runner.encode_images(images[:4]), atol=1e-4)
    assert abs(aucs[0] - aucs[1]) <= AUC_TOLERANCE


def test_fused_screen_graph_of_the_shipped_models(exported: Path, test_split) -> None:  # type: ignore[no-untyped-def]
    """When the shipped tower shares trunk blocks with the triage backbone, one graph serves both, exactly."""
    from radclip.export.parity import export_and_check_screen
    from radclip.export.shared_trunk import shared_blocks
    from radclip.models.registry import find_card, load_pretrained
    from radclip.runtime.onnx_backend import OnnxScreenRunner, OnnxTriageRunner, find_exports, session

    triage, tcard = load_pretrained(find_card("radclip-mobilenetv2-nih")[1])
    clip, ccard = load_pretrained(find_card("radclip-medclip-mini")[1])
    n = shared_blocks(triage, tcard.preprocessing, clip)
    lines = list(export_and_check_screen(tcard.name, ccard.name, exported))
    files = find_exports(exported, tcard, partner=ccard)
    if n == 0:  # 0.2.0: its trunk's BN statistics drifted from the triage backbone's (docs/medclip.md)
        assert "no trunk block is shared" in lines[0] and "screen" not in files
        pytest.skip(f"{ccard.name} shares no trunk block with {tcard.name}: no fused graph to check ({lines[0]})")
    assert f"{n} shared trunk blocks" in lines[0] and "parity" in lines[0] and "screen" in files
    images = _images(test_split, tcard.preprocessing.input_size)
    separate = OnnxTriageRunner(tcard, files["triage"])
    fused = OnnxScreenRunner(separate, files["screen"])
    both = fused.run_batch(images)
    fused_logits = np.stack([r.logits for r, _ in both])
    separate_logits = session(files["triage"]).run(None, {"image": images})[0]
    embeddings = session(find_exports(exported, ccard)["clip-image"]).run(None, {"image": images})[0]
    assert np.abs(fused_logits - separate_logits).max() <= 1e-4
    assert np.abs(np.stack([e for _, e in both]) - embeddings).max() <= 1e-4
    labels = test_split.labels_matrix()
    assert abs(_mean_auc(labels, fused_logits) - _mean_auc(labels, separate_logits)) <= AUC_TOLERANCE
