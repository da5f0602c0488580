"""Drift statistics on synthetic embeddings with known answers (the real-data measurement is in docs/operations.md)."""

from __future__ import annotations

import numpy as np
import pytest

from radclip.engine.drift import (
    COSINE_ALERT,
    RollingDrift,
    mean_cosine_distance,
    median_bandwidth,
    mmd_permutation_test,
)


def _cloud(rng: np.random.Generator, centre: np.ndarray, n: int, spread: float = 0.3) -> np.ndarray:
    return centre + rng.normal(0, spread, (n, len(centre)))


def test_cosine_distance_golden() -> None:
    assert mean_cosine_distance(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([0.0, 1.0])) == pytest.approx(
        1.0
    )
    # mean of unit vectors at 0 and 90 degrees points at 45: 1 - cos(45) against the x axis
    assert mean_cosine_distance(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1.0, 0.0])) == pytest.approx(
        1 - np.sqrt(0.5)
    )


def test_rolling_window_detects_a_shift_and_not_the_reference() -> None:
    rng = np.random.default_rng(0)
    a, b = np.eye(16)[0] * 1.0, (np.eye(16)[0] + np.eye(16)[1]) / np.sqrt(2)
    reference = _cloud(rng, a, 500)
    drift = RollingDrift(reference, window=50)
    same = [drift.update(e) for e in _cloud(rng, a, 50)]
    assert same[:-1] == [None] * 49 and not same[-1].drifted and same[-1].cosine_distance < 0.02
    shifted = [drift.update(e) for e in _cloud(rng, b, 50)]
    assert shifted[-1].drifted and shifted[-1].cosine_distance > COSINE_ALERT
    first = next(i for i, r in enumerate(shifted) if r is not None and r.drifted)
    assert 0 < first < 50  # detected part-way through the switch, once enough of the window moved


def test_mmd_rejects_a_change_of_spread_the_mean_misses() -> None:
    rng = np.random.default_rng(1)
    centre = np.eye(16)[0]
    reference = _cloud(rng, centre, 200, 0.2)
    bw = median_bandwidth(reference)
    _, p_same = mmd_permutation_test(reference[:100], _cloud(rng, centre, 100, 0.2), bw, n_perm=200)
    wide = _cloud(rng, centre, 100, 0.6)
    _, p_wide = mmd_permutation_test(reference[:100], wide, bw, n_perm=200)
    assert p_same > 0.05 and p_wide < 0.01
    assert mean_cosine_distance(wide, reference.mean(axis=0)) < COSINE_ALERT  # the spec's statistic stays quiet
