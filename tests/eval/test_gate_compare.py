"""The release gate's comparison logic and its diff text."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from radclip.eval.gate import compare, format_diff, load_baseline


def _block() -> dict:
    auc = {"Effusion": {"auc": 0.80, "n_pos": 20, "n_neg": 150, "measurable": True},
           "Hernia": {"auc": 0.90, "n_pos": 2, "n_neg": 170, "measurable": False}}
    return {"split": "test", "n_images": 170, "triage_auc": copy.deepcopy(auc), "zeroshot_auc": copy.deepcopy(auc),
            "retrieval": {"i2t_R@5": 0.3, "t2i_R@5": 0.25}, "ece": {"triage_calibrated": 0.05},
            "fairness_gaps": {"triage/sex/Effusion": 0.07}, "fairness_flags": ["triage/sex/Effusion"]}


def test_identical_passes() -> None:
    res = compare(_block(), _block())
    assert res.passed
    text = format_diff(res)
    assert "GATE PASSED" in text and "triage AUC Effusion" in text and "Hernia" not in text
    assert "Hernia" in format_diff(res, verbose=True)


def test_auc_drop_beyond_limit_fails_and_small_drop_passes() -> None:
    cur = _block()
    cur["zeroshot_auc"]["Effusion"]["auc"] = 0.775  # drop 0.025
    cur["triage_auc"]["Effusion"]["auc"] = 0.785  # drop 0.015: allowed
    cur["triage_auc"]["Hernia"]["auc"] = 0.10  # not measurable: ignored
    res = compare(_block(), cur)
    assert not res.passed
    assert res.failures == ["zero-shot AUC Effusion dropped 0.025 (> 0.02): 0.800 -> 0.775"]
    text = format_diff(res)
    assert "GATE FAILED (1)" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("zero-shot AUC Effusion"))
    assert "0.800" in line and "0.775" in line and "-0.025" in line and "FAIL" in line


def test_new_fairness_flag_fails_and_cleared_flag_passes() -> None:
    cur = _block()
    cur["fairness_flags"] = ["zero-shot/age/Effusion"]
    cur["fairness_gaps"] = {"zero-shot/age/Effusion": 0.12, "triage/sex/Effusion": 0.01}
    res = compare(_block(), cur)
    assert res.failures == ["new fairness flag zero-shot/age/Effusion: gap 0.120"]
    statuses = {r.metric: r.status for r in res.rows}
    assert statuses["fairness flag triage/sex/Effusion"] == "gone"
    # the stricter rule: only flags whose gap CI excludes zero count
    cur["fairness_flags_significant"] = []
    assert compare(_block(), cur, significant_flags_only=True).passed
    cur["fairness_flags_significant"] = ["zero-shot/age/Effusion"]
    assert not compare(_block(), cur, significant_flags_only=True).passed


def test_load_baseline_accepts_report_or_block(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(json.dumps({"performance": {}, "gate": _block()}))
    (tmp_path / "b.json").write_text(json.dumps(_block()))
    assert load_baseline(tmp_path / "r.json") == load_baseline(tmp_path / "b.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="no gate metrics"):
        load_baseline(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="radclip report"):
        load_baseline(tmp_path / "missing.json")
