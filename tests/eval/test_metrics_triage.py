"""AUC (vs scikit-learn), patient bootstrap, measurable-label mean, ECE and Brier by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from radclip.eval.metrics import (
    auc_with_ci,
    brier_score,
    expected_calibration_error,
    mean_auc,
    per_label_auc,
    quick_mean_auc,
    roc_auc,
)


def test_roc_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=200) + y, 1)  # rounding makes ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert np.isnan(roc_auc(np.ones(5), np.arange(5)))


def test_unknown_labels_are_dropped() -> None:
    y = np.array([1, 0, np.nan, 1, 0, -1, 1, 0])
    s = np.array([0.9, 0.1, 0.99, 0.8, 0.3, 0.0, 0.7, 0.2])
    r = auc_with_ci(y, s, n_boot=50)
    assert r.auc == 1.0 and r.n_pos == 3 and r.n_neg == 3 and r.measurable


def test_patient_bootstrap_is_wider_when_images_are_duplicated() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 40)
    s = rng.normal(size=40) + 0.8 * y
    yy, ss = np.repeat(y, 5), np.repeat(s, 5)  # every patient has 5 identical images
    patients = np.repeat(np.arange(40), 5)
    by_image = auc_with_ci(yy, ss, n_boot=300, seed=0)
    by_patient = auc_with_ci(yy, ss, groups=patients, n_boot=300, seed=0)
    assert by_image.auc == by_patient.auc
    assert by_patient.ci_low <= by_patient.auc <= by_patient.ci_high
    width_i = by_image.ci_high - by_image.ci_low
    width_p = by_patient.ci_high - by_patient.ci_low
    assert width_p > 1.5 * width_i, (width_i, width_p)


def test_mean_auc_uses_measurable_labels_only() -> None:
    labels = np.array([[1, 1, 0], [1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 0], [0, 1, 0]], dtype=float)
    scores = np.array([[0.9, 0.1, 0.5], [0.8, 0.5, 0.2], [0.7, 0.4, 0.1], [0.1, 0.3, 0.9], [0.2, 0.9, 0.3], [0.3, 0.2, 0.4], [0.0, 0.8, 0.5]])
    res = per_label_auc(labels, scores, ["a", "b", "c"], n_boot=20)
    assert res["a"].measurable and res["b"].measurable and not res["c"].measurable  # c has 1 positive
    assert res["c"].auc == 1.0
    assert mean_auc(res) == pytest.approx((res["a"].auc + res["b"].auc) / 2)
    assert quick_mean_auc(labels, scores) == pytest.approx(mean_auc(res))


def test_ece_and_brier_by_hand() -> None:
    y = np.array([1, 0, 1, 1, np.nan])
    p = np.array([0.95, 0.15, 0.12, 0.55, 0.5])
    # bins (10): 0.95 -> 9, 0.15 -> 1, 0.12 -> 1, 0.55 -> 5 ; NaN row ignored
    want = (1 / 4) * abs(1 - 0.95) + (2 / 4) * abs(0.5 - 0.135) + (1 / 4) * abs(1 - 0.55)
    assert expected_calibration_error(y, p) == pytest.approx(want)
    assert brier_score(y, p) == pytest.approx(np.mean([0.05**2, 0.15**2, 0.88**2, 0.45**2]))


def test_uncertain_labels_are_dropped_not_ranked() -> None:
    """-1 (uncertain) is unknown: the AUC equals the AUC of the rows without it (a -1 kept as a label would change it)."""
    from radclip.eval.metrics import auc_with_ci

    y = np.array([1, 0, 1, 0, -1, -1, 1, 0], dtype=float)
    s = np.array([0.9, 0.1, 0.8, 0.3, 0.05, 0.95, 0.7, 0.2])
    keep = y >= 0
    res = auc_with_ci(y, s, n_boot=0)
    assert res.auc == pytest.approx(1.0) and (res.n_pos, res.n_neg) == (3, 3)
    assert res.auc == pytest.approx(auc_with_ci(y[keep], s[keep], n_boot=0).auc)
