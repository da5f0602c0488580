"""Fairness: constructed subgroup gaps with known AUCs, age bands, flags, paired-bootstrap CIs, prompt gaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radclip.eval.fairness import (
    age_band,
    attribute_groups,
    fairness_analysis,
    gap_with_ci,
    prompt_group_gaps,
    sex_group,
)


def _two_groups(n_per: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Group M: scores separate perfectly (AUC 1). Group F: scores are 1 - label * 0 with a known 0.75 AUC."""
    y_m = np.tile([1, 0], n_per // 2).astype(float)
    s_m = y_m + 0.01 * np.arange(n_per)  # positives always above negatives -> AUC 1.0
    # F: 4 positives at ranks making AUC = 0.75 against 4 negatives: pos scores 2,4,6,8 ; neg 1,3,5,7 -> pairs won 10/16
    y_f = np.tile([1, 1, 1, 1, 0, 0, 0, 0], n_per // 8).astype(float)
    s_f = np.tile([2.0, 4.0, 6.0, 8.0, 1.0, 3.0, 5.0, 7.0], n_per // 8) + np.repeat(np.arange(n_per // 8) * 100.0, 8)
    y = np.concatenate([y_m, y_f])
    s = np.concatenate([s_m, s_f])
    groups = np.array(["M"] * n_per + ["F"] * n_per, dtype=object)
    patients = np.array([f"p{i // 2}" for i in range(2 * n_per)])  # two images per patient, never across groups
    return y, s, groups, patients


def test_age_bands_and_sex_groups() -> None:
    assert [age_band(a) for a in (12, 39.9, 40, 60, 60.5, 90, float("nan"))] == ["<40", "<40", "40-60", "40-60", ">60", ">60", ""]
    assert [sex_group(v) for v in ("M", "f", "", None, "other")] == ["M", "F", "", "", ""]
    frame = pd.DataFrame({"sex": ["M", "F", ""], "age": [30.0, 50.0, np.nan]})
    groups = attribute_groups(frame)
    assert list(groups["sex"]) == ["M", "F", ""] and list(groups["age"]) == ["<40", "40-60", ""]


def test_constructed_gap_value_and_ci() -> None:
    y, s, g, p = _two_groups()
    from radclip.eval.metrics import roc_auc

    assert roc_auc(y[g == "F"], s[g == "F"]) < 1.0
    res = gap_with_ci(y, s, g, p, "M", "F", n_boot=200, seed=1)
    expected = 1.0 - roc_auc(y[g == "F"], s[g == "F"])
    assert res["gap"] == pytest.approx(expected)
    assert res["ci_low"] <= res["gap"] <= res["ci_high"]
    assert res["excludes_zero"] is True  # group M is perfect in every resample; F never is
    # Identical groups: no gap, and the CI straddles zero.
    same = gap_with_ci(np.concatenate([y[g == "M"]] * 2), np.concatenate([s[g == "M"]] * 2), g, p, "M", "F", n_boot=100)
    assert same["gap"] == pytest.approx(0.0) and same["excludes_zero"] is False


def test_fairness_analysis_flags_only_large_gaps() -> None:
    y, s, g, p = _two_groups()
    labels = np.stack([y, y], axis=1)
    fair_scores = np.stack([s, np.where(y == 1, 1.0, 0.0) + 0.001 * np.arange(len(y))], axis=1)  # col 1: perfect for everyone
    ages = np.array(["<40"] * len(y), dtype=object)
    out = fairness_analysis(labels, {"m": fair_scores}, ["A", "B"], {"sex": g, "age": ages}, p, n_boot=100, seed=0)
    keys = [f["key"] for f in out["flags"]]
    assert keys == ["m/sex/A"]
    entry = out["models"]["m"]["sex"]["A"]
    assert entry["gap"]["higher"] == "M" and entry["gap"]["lower"] == "F" and entry["gap"]["flagged"]
    assert entry["groups"]["M"]["auc"] == pytest.approx(1.0)
    assert out["models"]["m"]["sex"]["B"]["gap"]["gap"] == pytest.approx(0.0)
    assert out["models"]["m"]["age"]["A"]["gap"] is None  # a single age group: no gap to compute
    assert out["groups"]["sex"] == {"F": 40, "M": 40}


def test_prompt_group_gaps_detects_sign_change() -> None:
    y, s, g, _ = _two_groups()
    labels = y[:, None]
    flipped = np.where(g == "M", -s, s)  # template 2 hurts M instead of F
    out = prompt_group_gaps(labels, {"t1": s[:, None], "t2": flipped[:, None]}, ["A"], {"sex": g})
    e = out["sex"]["A"]
    assert e["higher"] == "M" and e["gap_per_template"]["t1"] > 0 > e["gap_per_template"]["t2"]
    assert e["sign_change"] and e["differs"]


def test_weighted_bootstrap_auc_equals_rank_auc_of_expanded_resample() -> None:
    from radclip.eval.fairness import bootstrap_weights, weighted_auc
    from radclip.eval.metrics import roc_auc

    rng = np.random.default_rng(3)
    y = (rng.random(60) < 0.3).astype(float)
    s = np.round(rng.normal(size=60), 1)  # rounding makes ties
    patients = np.array([f"p{i // 3}" for i in range(60)])
    w = bootstrap_weights(patients, 25, seed=4)
    assert w.shape == (25, 60) and np.all(w.sum(1) == 60)  # equal-size patients: every resample keeps 60 rows
    assert np.all(w.reshape(25, 20, 3) == w.reshape(25, 20, 3)[:, :, :1])  # a patient's rows move together
    fast = weighted_auc(y, s, w)
    for b in range(25):
        idx = np.repeat(np.arange(60), w[b].astype(int))
        assert fast[b] == pytest.approx(roc_auc(y[idx], s[idx]), abs=1e-12)
