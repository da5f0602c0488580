"""The release gate's comparison logic: it fails closed on every way a comparison can be wrong (issue 20)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from radclip.eval.gate import GATE_VERSION, compare, format_diff, gate_metrics, load_baseline, score_block
from radclip.eval.metrics import auc_with_ci

NAMES = ["Effusion", "Hernia"]
N = 200


def _scores(noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (N, 2), scores (N, 2) with AUC falling as ``noise`` grows, patients (2 images each)."""
    rng = np.random.default_rng(0)
    y = np.stack([rng.random(N) < 0.3, np.zeros(N, bool)], axis=1).astype(float)
    y[:2, 1] = 1  # Hernia: one positive patient (rows 0 and 1) -> not measurable
    s = y + np.random.default_rng(seed).normal(0, noise, y.shape)
    return y, s, np.array([f"p{i // 2}" for i in range(N)])


def _block(noise: float = 0.6, seed: int = 0, snapshot: str = "sha256:aaa") -> dict:
    y, s, pats = _scores(noise, seed)
    per = {n: auc_with_ci(y[:, k], s[:, k], pats, n_boot=0).to_dict() for k, n in enumerate(NAMES)}
    fairness = {"threshold": 0.05, "models": {"triage": {"sex": {"Effusion": {"gap": {"gap": 0.07, "ci_low": -0.02, "ci_high": 0.16}}}}}, "flags": []}
    meta = {"split": "test", "data_snapshot": snapshot, "n_images": N}
    return gate_metrics(per, copy.deepcopy(per), {"i2t_R@5": 0.3}, {"triage_calibrated": 0.05}, fairness, meta,
                        score_block(NAMES, [f"i{i}" for i in range(N)], pats, y, s, s))


def test_identical_passes_and_unmeasurable_is_listed() -> None:
    base = _block()
    assert base["gate_version"] == GATE_VERSION and not base["triage_auc"]["Hernia"]["measurable"]
    res = compare(base, _block(), n_boot=200)
    assert res.passed, res.failures
    text = format_diff(res)
    assert "GATE PASSED" in text and "triage AUC Effusion" in text and "Hernia" not in text
    assert "Hernia" in format_diff(res, verbose=True) and "1 pos" in format_diff(res, verbose=True)


def test_significant_drop_fails_and_noise_level_change_passes() -> None:
    base = _block(noise=0.4)
    worse = _block(noise=1.5)  # AUC drops by ~0.2 on the same images: significant
    res = compare(base, worse, n_boot=300)
    assert not res.passed
    assert any(f.startswith("triage AUC Effusion dropped") and "excludes 0" in f for f in res.failures)
    reseeded = _block(noise=0.4, seed=5)  # same quality, other noise draw: |drop| small or not significant
    drop = base["triage_auc"]["Effusion"]["auc"] - reseeded["triage_auc"]["Effusion"]["auc"]
    assert abs(drop) < 0.05
    assert compare(base, reseeded, n_boot=300).passed


def test_drop_above_limit_but_not_significant_passes() -> None:
    # 8 images from 4 patients: any drop has a CI spanning 0
    y = np.array([[1], [1], [0], [0], [1], [0], [0], [1]], float)
    pats = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])
    good, bad = np.arange(8, dtype=float)[:, None] * (2 * y - 1), np.arange(8, dtype=float)[:, None] * (2 * y - 1)
    bad[0, 0] = -100.0  # one positive pushed to the bottom
    meta = {"split": "test", "data_snapshot": "s"}
    fair = {"threshold": 0.05, "models": {}, "flags": []}

    def blk(s: np.ndarray) -> dict:
        per = {"Effusion": {**auc_with_ci(y[:, 0], s[:, 0], pats, n_boot=0).to_dict(), "measurable": True}}
        return gate_metrics(per, per, None, {}, fair, meta, score_block(["Effusion"], list("abcdefgh"), pats, y, s, s))

    b, c = blk(good), blk(bad)
    assert b["triage_auc"]["Effusion"]["auc"] - c["triage_auc"]["Effusion"]["auc"] > 0.02
    res = compare(b, c, n_boot=300)
    row = next(r for r in res.rows if r.metric == "triage AUC Effusion")
    assert row.status == "ok" and "CI" in row.note


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c["triage_auc"]["Effusion"].update(auc=float("nan")), "AUC is NaN"),
        (lambda c: c["triage_auc"].pop("Effusion"), "missing in candidate"),
        (lambda c: c["triage_auc"]["Effusion"].update(measurable=False), "not measurable in candidate"),
        (lambda c: c.pop("fairness"), "no fairness section"),
        (lambda c: c.pop("scores"), "no per-image scores"),
        (lambda c: c["fairness"].update(flags=["triage/sex/Effusion"]), "new fairness flag triage/sex/Effusion"),
    ],
)
def test_fails_closed(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    cur = _block()
    mutate(cur)
    res = compare(_block(), cur, n_boot=50)
    assert not res.passed
    assert any(message in f for f in res.failures), res.failures


def test_other_data_snapshot_fails_without_comparing() -> None:
    res = compare(_block(snapshot="sha256:v1"), _block(snapshot="sha256:v2"))
    assert not res.passed and res.data_mismatch and not res.rows
    assert "radclip report --out docs/reports" in res.failures[0] and "data change" in res.failures[0]
    old = _block()
    old.pop("gate_version")
    assert compare(old, _block()).data_mismatch


def test_load_baseline_accepts_report_or_block(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(json.dumps({"performance": {}, "gate": _block()}))
    (tmp_path / "b.json").write_text(json.dumps(_block()))
    assert load_baseline(tmp_path / "r.json") == load_baseline(tmp_path / "b.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="no gate metrics"):
        load_baseline(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="radclip report"):
        load_baseline(tmp_path / "missing.json")
