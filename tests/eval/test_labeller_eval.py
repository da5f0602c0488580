"""Labeller evaluation: kappa and F1 arithmetic, the hand-label file, held-out numbers on the shared data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from radclip.eval.labeller_eval import HAND_LABELS, binary_agreement, cohen_kappa, evaluate_labeller
from radclip.io.labels import REPORT_LABELS


def test_kappa_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    for p in (0.1, 0.5):
        a = rng.random(200) < p
        b = np.where(rng.random(200) < 0.8, a, ~a)
        assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert cohen_kappa(np.zeros(5), np.zeros(5)) is None  # chance agreement 1: undefined


def test_binary_agreement_counts() -> None:
    pred = np.array([1, 1, 0, 0, 1, 0], bool)
    ref = np.array([1, 0, 1, 0, 1, 0], bool)
    out = binary_agreement(pred, ref)
    assert (out["tp"], out["fp"], out["fn"], out["tn"]) == (2, 1, 1, 2)
    assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 / 3) and out["kappa"] == pytest.approx(1 / 3)
    none = binary_agreement(np.zeros(4, bool), np.zeros(4, bool))
    assert none["precision"] is None and none["recall"] is None and none["f1"] is None


def test_hand_label_file_holds_hashes_and_labels_only() -> None:
    hand = pd.read_csv(HAND_LABELS, dtype={"note_sha256": str})
    assert list(hand.columns) == ["note_sha256", "image_id", *REPORT_LABELS]
    assert len(hand) == 50 and hand["note_sha256"].is_unique
    assert hand["note_sha256"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert set(np.unique(hand[list(REPORT_LABELS)].to_numpy())) <= {-1, 0, 1}


def test_held_out_numbers_on_shared_data(data_root: Path, cxr_manifest: Path) -> None:
    iu = data_root / "text" / "iu_reports.csv"
    if not iu.is_file():
        pytest.skip(f"{iu} not found")
    out = evaluate_labeller(iu, cxr_manifest)
    test = out["mesh"]["test"]
    assert test["n_reports"] == 816 and out["mesh"]["val"]["n_reports"] == 438
    card = test["per_label"]["Cardiomegaly"]
    assert (card["reference_pos"], card["labeller_pos"], card["tp"]) == (67, 66, 63)
    notes = out["covid_notes"]
    assert notes["n_notes"] == 50
    infil, cons = notes["per_label"]["Infiltration"], notes["per_label"]["Consolidation"]
    assert (infil["reference_pos"], infil["tp"], infil["fp"]) == (28, 10, 1)  # ground glass is missed
    assert (cons["tp"], cons["fp"], cons["fn"]) == (14, 0, 0)
