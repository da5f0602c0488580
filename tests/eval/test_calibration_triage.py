"""Temperature scaling recovers a known temperature; pooled fallback; reliability PNG; confidence band."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radclip.eval.calibration import calibrated_probs, fit_temperature, fit_temperatures, reliability_diagram
from radclip.eval.metrics import expected_calibration_error
from radclip.models.confidence import confidence_band, wilson_interval


def _overconfident(n: int, t_true: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    return z * t_true, y  # logits t_true times too large


def test_fit_temperature_recovers_known_scale() -> None:
    logits, y = _overconfident(20000, 3.0, 0)
    assert fit_temperature(logits, y) == pytest.approx(3.0, rel=0.08)


def test_per_class_with_pooled_fallback_and_ece_drops() -> None:
    l1, y1 = _overconfident(3000, 2.0, 1)
    l2, y2 = _overconfident(3000, 0.5, 2)
    logits = np.stack([l1, l2, l1], axis=1)
    labels = np.stack([y1, y2, np.zeros_like(y1)], axis=1)  # third label: no positives -> pooled T
    labels[:10, 1] = np.nan
    temps = fit_temperatures(logits, labels)
    assert temps[0] == pytest.approx(2.0, rel=0.15) and temps[1] == pytest.approx(0.5, rel=0.15)
    known = labels[:, :2]
    pooled = fit_temperature(logits[:, :3][~np.isnan(labels)], labels[~np.isnan(labels)])
    assert temps[2] == pytest.approx(pooled)
    before = expected_calibration_error(known, calibrated_probs(logits[:, :2], None))
    after = expected_calibration_error(known, calibrated_probs(logits[:, :2], temps[:2]))
    assert after < 0.5 * before


def test_reliability_png(tmp_path: Path) -> None:
    logits, y = _overconfident(500, 2.0, 3)
    out = reliability_diagram(y[:, None], {"raw": calibrated_probs(logits[:, None], None)}, tmp_path / "r.png")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_wilson_and_band() -> None:
    lo, hi = wilson_interval(0.5, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert confidence_band(0.3, None) == (0.0, 1.0)
    narrow = confidence_band(0.05, [1000] + [10] * 9)
    wide = confidence_band(0.55, [1000] + [10] * 9)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
