"""Stratified patient bootstrap: weighted AUC parity, percentiles, strata, counts and the paired difference."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from radclip.eval.patient_bootstrap import (
    bootstrap_aucs,
    counts,
    paired_patient_bootstrap_diff,
    patient_stratified_bootstrap_auc,
    patient_weights,
    weighted_auc,
)


def _data(seed: int = 0, n: int = 80) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pid = rng.integers(0, 30, n).astype(str)
    y = (rng.random(n) < 0.3).astype(float)
    s = np.round(y + rng.normal(size=n), 1)  # rounded: ties on purpose
    return y, s, pid


def test_weighted_auc_equals_sklearn_on_repeated_rows() -> None:
    y, s, _ = _data()
    w = np.random.default_rng(1).integers(0, 4, size=(5, len(y))).astype(float)
    got = weighted_auc(y, s, w)
    for b in range(5):
        idx = np.repeat(np.arange(len(y)), w[b].astype(int))
        assert got[b] == pytest.approx(roc_auc_score(y[idx], s[idx]), abs=1e-12)


def test_ci_is_the_95_percent_interval_of_the_bootstrap_distribution() -> None:
    y, s, pid = _data()
    auc, lo, hi, _ = patient_stratified_bootstrap_auc(y, s, pid, n_boot=400, seed=3)
    dist = bootstrap_aucs(y, s, pid, n_boot=400, seed=3)
    assert auc == pytest.approx(roc_auc_score(y, s))
    # independent percentile check: sorted-order statistics, not np.percentile's own call
    srt = np.sort(dist)
    assert srt[9] <= lo <= srt[10] and srt[389] <= hi <= srt[390]  # 2.5% and 97.5% of 400
    assert hi - lo > 0.05  # a 90% interval would be visibly narrower than this check's bounds allow


def test_strata_keep_patient_counts_and_never_lose_a_class() -> None:
    y = np.array([1, 0, 0, 0, 0, 0, 1, 0], float)
    pid = np.array(["a", "a", "b", "c", "d", "e", "f", "f"])
    w = patient_weights(y, pid, n_boot=500, seed=0)
    # positive stratum {a, f}: 2 patient draws per resample; each brings both of its images
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 6] == w[:, 7])
    assert np.all(w[:, 0] + w[:, 6] == 2)
    assert np.all(w[:, [2, 3, 4, 5]].sum(axis=1) == 4)  # negative stratum {b, c, d, e}
    assert np.all((w * (y == 1)).sum(axis=1) > 0)  # no resample without a positive: none discarded


def test_counts_and_measurability_are_per_patient() -> None:
    # 8 positive images from 1 patient (Hernia in v1): not measurable however many images
    y = np.array([1] * 8 + [0] * 10, float)
    pid = np.array(["p"] * 8 + [f"n{i}" for i in range(10)])
    c = counts(y, pid)
    assert (c.n_pos_images, c.n_neg_images, c.n_pos_patients, c.n_neg_patients) == (8, 10, 1, 10)
    assert not c.measurable
    pid2 = np.array(["p", "q", "r"] + ["p"] * 5 + [f"n{i}" for i in range(10)])
    assert counts(y, pid2).measurable
    y_nan = y.copy()
    y_nan[:5] = np.nan
    assert counts(y_nan, pid2).n_pos_images == 3


def test_paired_difference_uses_the_same_resamples() -> None:
    y, s, pid = _data(seed=2)
    same = paired_patient_bootstrap_diff(y, s, s, pid, n_boot=200)
    assert same["diff"] == 0 and same["lo"] == 0 and same["hi"] == 0  # unpaired CIs would not collapse
    noisy = s + np.random.default_rng(5).normal(scale=2.0, size=len(s))
    out = paired_patient_bootstrap_diff(y, s, noisy, pid, n_boot=300, seed=1)
    assert out["diff"] == pytest.approx(roc_auc_score(y, s) - roc_auc_score(y, noisy))
    assert out["lo"] < out["diff"] < out["hi"]
    assert out["n_pos_patients"] == counts(y, pid).n_pos_patients


def test_perfect_separation_and_missing_class() -> None:
    y = np.array([0, 0, 0, 1, 1, 1], float)
    pid = np.array(list("abcdef"))
    assert patient_stratified_bootstrap_auc(y, y * 2, pid, n_boot=50)[:3] == (1.0, 1.0, 1.0)
    auc, lo, hi, c = patient_stratified_bootstrap_auc(np.zeros(4), np.arange(4.0), np.array(list("abcd")), 50)
    assert auc is None and lo is None and hi is None and c.n_pos_images == 0
