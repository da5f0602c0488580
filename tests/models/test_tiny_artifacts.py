"""The one builder of tiny seeded test models: loads through load_pretrained, deterministic per seed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from radclip.io.labels import NIH_LABELS
from radclip.models.registry import load_pretrained
from radclip.models.tiny_artifacts import write_tiny_clip, write_tiny_models, write_tiny_triage

FILES = ("tiny-triage.safetensors", "tiny-triage.card.json", "tiny-clip.safetensors", "tiny-clip.card.json")


def test_same_seed_writes_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    a, b = write_tiny_models(tmp_path / "a"), write_tiny_models(tmp_path / "b")
    assert [p.name for p in a] == [p.name for p in b] == ["tiny-triage.safetensors", "tiny-clip.safetensors"]
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other = write_tiny_clip(tmp_path / "c", seed=1)
    assert other.read_bytes() != b[1].read_bytes()


def test_artifacts_load_through_load_pretrained_and_keep_the_callers_rng(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    triage_path = write_tiny_triage(tmp_path, "v9", calibration={"temperature": {NIH_LABELS[0]: 2.0}})
    clip_path = write_tiny_clip(tmp_path, "v9")
    assert torch.equal(torch.rand(3), expected_next)  # the builders did not consume the global RNG

    triage, tcard = load_pretrained(triage_path)
    assert (tcard.name, tcard.version, tcard.architecture, tcard.labels) == ("tiny-triage", "v9", "mobilenetv2_triage",
                                                                             list(NIH_LABELS))  # fmt: skip
    assert (tcard.preprocessing.input_size, tcard.preprocessing.in_chans, tcard.calibration) == (
        224, 1, {"temperature": {NIH_LABELS[0]: 2.0}})  # fmt: skip
    clip, ccard = load_pretrained(clip_path)
    assert (ccard.name, ccard.architecture, ccard.preprocessing.input_size) == ("tiny-clip", "medclip", 32)

    # the loaded weights are the seed-0 network itself, not merely something of the right shape
    from radclip.models.registry import create_model

    torch.manual_seed(0)
    reference = create_model("medclip_tiny").eval()
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        torch.testing.assert_close(clip.encode_image(x), reference.encode_image(x), rtol=0, atol=0)
        logits = triage(torch.rand(1, 1, 224, 224, generator=torch.Generator().manual_seed(6)))
    assert logits.shape == (1, len(NIH_LABELS)) and not torch.isnan(logits).any()


def test_card_names_the_weights_sha(tmp_path: Path) -> None:
    from radclip.models.card import ModelCard
    from radclip.models.weights import WeightsError, sha256_file

    path = write_tiny_clip(tmp_path)
    card = ModelCard.load(tmp_path / "tiny-clip.card.json")
    assert card.weights_sha256 == sha256_file(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        load_pretrained(path)
