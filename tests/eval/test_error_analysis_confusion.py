"""Error analysis on hand-made scores: top-3 confusion matrix, score percentiles, gallery selection, Spearman."""

from __future__ import annotations

import numpy as np
import pytest

from radclip.eval.error_analysis import failure_cases, report_similarity, score_percentiles, topk_confusion

NAMES = ["A", "B", "C", "D", "E"]


def test_top3_confusion_by_hand() -> None:
    labels = np.array([
        [1, 0, 0, 0, 0],  # A-positive; top-3 = A, B, C
        [1, 1, 0, 0, 0],  # A and B positive; top-3 = D, E, B
        [0, 1, 0, 0, 0],  # B-positive; top-3 = A, B, E
        [np.nan] * 5,  # unknown row: never counted
    ], dtype=float)
    scores = np.array([
        [0.9, 0.8, 0.7, 0.1, 0.0],
        [0.0, 0.7, 0.1, 0.9, 0.8],
        [0.9, 0.8, 0.0, 0.1, 0.7],
        [0.9, 0.9, 0.9, 0.9, 0.9],
    ])
    out = topk_confusion(labels, scores, NAMES, subset=["A", "B", "C"], k=3)
    conf, hit = np.array(out["confusion"], dtype=float), np.array(out["hit"], dtype=float)
    assert out["n_pos"] == {"A": 2, "B": 2, "C": 0}
    assert conf[0, 0] == pytest.approx(0.5)  # A in top-3 for 1 of 2 A-positives
    assert hit[0, 1] == pytest.approx(1.0)  # B shows in both A-positives' top-3 ...
    assert conf[0, 1] == pytest.approx(1.0)  # ... and in the one A-positive that is B-negative
    assert out["denominator"][0][1] == 1
    assert conf[0, 2] == pytest.approx(0.5)  # C in top-3 of 1 of the 2 (C-negative) A-positives
    assert conf[1, 0] == pytest.approx(1.0)  # the B-only image has A in its top-3; row 1 (A-pos) is excluded
    assert conf[1, 1] == pytest.approx(1.0)
    assert out["confusion"][2] == [None, None, None]  # no C positives


def test_score_percentiles_with_ties() -> None:
    labels = np.array([[0], [0], [0], [0], [1]], dtype=float)
    scores = np.array([[0.1], [0.2], [0.3], [0.4], [0.3]])
    pct = score_percentiles(labels, scores)
    assert pct[4, 0] == pytest.approx(2.5 / 4)  # two below, one tie (half)
    assert pct[0, 0] == pytest.approx(0.5 / 4)


def test_failure_groups() -> None:
    labels = np.array([[1], [1], [1], [0], [0], [0]], dtype=float)
    tri = np.array([[0.9], [0.2], [0.6], [0.0], [0.0], [0.0]])
    zs = np.array([[0.1], [0.95], [0.6], [0.0], [0.0], [0.0]])
    probs = np.array([[0.9], [0.1], [0.5], [0.2], [0.8], [0.3]])
    out = failure_cases(labels, tri, zs, probs, ["A"], per_group=2)
    assert [c["row"] for c in out["zeroshot_fails_supervised_succeeds"]] == [0]
    assert [c["row"] for c in out["supervised_fails_zeroshot_succeeds"]] == [1]
    assert [c["row"] for c in out["confident_false_positives"]] == [4, 5]  # negatives by triage probability
    assert out["counts"] == {"zeroshot_fails_supervised_succeeds": 1, "supervised_fails_zeroshot_succeeds": 1}


def test_report_similarity_spearman() -> None:
    reports = ["w " * n for n in (3, 5, 8, 13, 21, 34)]
    sims = np.array([0.1, 0.2, 0.25, 0.3, 0.5, 0.6])
    out = report_similarity(reports, sims)
    assert out["n"] == 6 and out["length"]["rho"] == pytest.approx(1.0)
    assert out["informativeness"]["rho"] is None  # no report names a finding: constant, undefined
    assert report_similarity(reports[:3], sims[:3])["n"] == 3
