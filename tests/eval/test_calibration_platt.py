"""Platt calibration with the pos_weight prior shift: recovery of known parameters, the shift identity,
the pooled fallback, card round trip, and the served runner applying exactly the same map."""

from __future__ import annotations

import numpy as np
import pytest

from radclip.eval.calibration import (
    LabelCalibration,
    calibration_block,
    calibration_from_card,
    cross_validated_ece,
    fit_platt,
    fit_platt_per_label,
    fit_temperatures,
    prior_shift,
)
from radclip.eval.metrics import per_label_ece
from radclip.models.card import ModelCard


def _labels_from(true_logit: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(true_logit.shape) < 1 / (1 + np.exp(-true_logit))).astype(float)


def test_fit_platt_recovers_a_known_slope_and_intercept() -> None:
    z = np.random.default_rng(0).normal(0, 2, 30000)
    y = _labels_from(z / 2.5 - 1.2, 1)
    t, b = fit_platt(z, y)
    assert t == pytest.approx(2.5, rel=0.06) and b == pytest.approx(-1.2, abs=0.06)


def test_prior_shift_removes_what_pos_weight_adds_and_a_temperature_cannot() -> None:
    """A pos_weight-w model emits about logit + log(w): Platt on the shifted logits is calibrated, T alone is not."""
    rng = np.random.default_rng(2)
    n, w = 4000, np.array([8.0, 4.0])
    true = np.stack([rng.normal(-2.5, 1.5, n), rng.normal(-1.5, 1.5, n)], axis=1)  # rare findings
    labels = _labels_from(true, 3)
    logits = true + np.log(w)[None, :]
    patients = np.arange(n).astype(str)
    shift = prior_shift(w, 2)
    assert shift == pytest.approx(np.log(w))
    cal = fit_platt_per_label(logits, labels, patients, shift=shift)
    assert cal.bias == pytest.approx(-np.log(w) / cal.temperature, abs=0.12)  # T ~ 1, b ~ -log w on the raw logits
    temps_only = LabelCalibration(fit_temperatures(logits, labels, patients), np.zeros(2))
    ece_platt = per_label_ece(labels, cal.probs(logits), ["a", "b"])["mean"]
    ece_temp = per_label_ece(labels, temps_only.probs(logits), ["a", "b"])["mean"]
    assert ece_platt < 0.03 < 0.06 < ece_temp


def test_label_with_few_patients_gets_the_pooled_fit_with_its_own_shift() -> None:
    rng = np.random.default_rng(4)
    n = 3000
    true = rng.normal(-1.0, 1.5, (n, 2))
    labels = _labels_from(true, 5)
    labels[:, 1] = 0.0
    labels[:3, 1] = 1.0  # three positive patients: below MIN_FIT_PATIENTS
    shift = np.array([1.0, 2.0])
    logits = true + shift[None, :]
    cal = fit_platt_per_label(logits, labels, np.arange(n).astype(str), shift=shift)
    z = logits - shift[None, :]
    known = np.isfinite(labels)
    t_pool, b_pool = fit_platt(z[known], labels[known])
    assert cal.temperature[1] == pytest.approx(t_pool, rel=1e-6)
    assert cal.bias[1] == pytest.approx(b_pool - shift[1] / t_pool, rel=1e-6)
    assert cal.temperature[0] != pytest.approx(t_pool, rel=1e-3)  # label 0 has its own fit


def test_card_round_trip_and_incomplete_blocks_are_refused() -> None:
    names = ["A", "B"]
    cal = LabelCalibration(np.array([1.5, 0.8]), np.array([-2.0, -1.0]))
    logits = np.random.default_rng(6).normal(0, 2, (50, 2))
    labels = (logits > 1).astype(float)
    block = calibration_block(cal, np.log([4.0, 2.0]), names, logits, labels, "val")
    card = ModelCard(name="x", architecture="a", version="0", task="triage", labels=names, calibration=block)
    back = calibration_from_card(card)
    assert back is not None and np.allclose(back.probs(logits), cal.probs(logits))
    assert sum(block["val_bin_counts"]) == labels.size
    old = ModelCard(name="x", architecture="a", version="0", task="triage", labels=names, calibration={"temperature": {"A": 2.0, "B": 1.0}})
    assert calibration_from_card(old).bias.tolist() == [0.0, 0.0]  # type: ignore[union-attr]
    partial = ModelCard(name="x", architecture="a", version="0", task="triage", labels=names, calibration={"temperature": {"A": 1.0, "B": 1.0}, "bias": {"A": 0.1}})
    with pytest.raises(ValueError, match="lacks intercepts for \\['B'\\]"):
        calibration_from_card(partial)


def test_served_runner_applies_the_card_calibration_exactly() -> None:
    from radclip.runtime.triage_runner import TriageRunner

    names = ["A", "B"]
    cal = LabelCalibration(np.array([1.5, 0.8]), np.array([-2.0, 0.7]))
    card = ModelCard(name="x", architecture="a", version="0", task="triage", labels=names, calibration=cal.to_card(names))
    logits = np.array([0.4, -1.3])
    result = TriageRunner(model=None, card=card)._result(logits, None, 1.0)
    assert result.probs == pytest.approx(cal.probs(logits[None, :])[0], abs=1e-12)


def test_cross_validation_prefers_the_recipe_that_matches_the_data() -> None:
    rng = np.random.default_rng(7)
    n = 1500
    true = rng.normal(-2.0, 1.5, (n, 1))
    labels = _labels_from(true, 8)
    logits = true + np.log(6.0)
    patients = np.repeat(np.arange(n // 3), 3).astype(str)  # three images per patient: folds split patients
    shift = np.log([6.0])
    platt = cross_validated_ece(logits, labels, patients, lambda z, y, g: fit_platt_per_label(z, y, g, shift=shift), ["a"])
    temp = cross_validated_ece(logits, labels, patients, lambda z, y, g: LabelCalibration(fit_temperatures(z, y, g), np.zeros(1)), ["a"])
    assert platt["ece_per_label_mean"] < temp["ece_per_label_mean"]
