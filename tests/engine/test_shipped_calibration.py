"""Shipped calibrations and reference: file round trips, refusals, the fit rules and the ranking rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radclip.engine.calibration import (
    LogisticCalibration,
    ReferenceDistribution,
    fit_calibration,
    load_shipped_calibrations,
    save_shipped_calibrations,
)
from radclip.engine.encoders import l2_normalise
from radclip.engine.fit_conditions import COVID, PEDIATRIC_PNEUMONIA, condition_labels
from radclip.engine.reference import (
    ShippedArtifactError,
    ShippedReference,
    fit_reference,
    load_reference,
    save_reference,
)
from radclip.engine.rules import Finding
from radclip.engine.screening import UNCALIBRATED_NOTE, Screener, StaticConditions, rank_findings

SHA = "a" * 64


def _population(n: int = 120, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return l2_normalise(rng.standard_normal((n, dim)) + 2.0 * rng.standard_normal(dim))


def test_reference_round_trip_and_refusals(tmp_path: Path) -> None:
    embs = _population()
    train = pd.DataFrame({"split": ["train"] * len(embs), "source": ["nih"] * 100 + ["kermany"] * 20})
    ref = fit_reference(embs, train, SHA, "sha256:data")
    path = save_reference(tmp_path / "m.reference.safetensors", ref)
    back = load_reference(path, SHA)
    np.testing.assert_allclose(back.distribution.mean, embs.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(back.distribution.cov, np.cov(embs, rowvar=False), atol=1e-6)
    assert (back.distribution.n, back.data_snapshot, back.sources) == (120, "sha256:data", "kermany,nih")
    with pytest.raises(ShippedArtifactError, match="rerun `radclip conditions calibrate --ship`"):
        load_reference(path, "b" * 64)  # other weights: refused
    with pytest.raises(ShippedArtifactError, match="train split only"):
        fit_reference(embs, train.assign(split=["train"] * 119 + ["val"]), SHA, "sha256:data")
    pool_fit = ShippedReference(ReferenceDistribution.from_embeddings(embs), SHA, "x", "pool", "pool")
    with pytest.raises(ShippedArtifactError, match="must come from 'train'"):
        load_reference(save_reference(tmp_path / "pool.reference.safetensors", pool_fit), SHA)


def test_shipped_calibrations_apply_only_to_the_same_prompt_ensemble(tmp_path: Path) -> None:
    conds = np.eye(3, 8, dtype=np.float32)
    cal = LogisticCalibration(20.0, -10.0, 9, 90)
    path = save_shipped_calibrations(tmp_path / "m.calibration.json", {"a": cal}, {"a": conds[0]},
                                     {"model_sha256": SHA, "split": "val"})  # fmt: skip
    shipped = load_shipped_calibrations(path, SHA)
    with pytest.raises(ValueError, match="rerun `radclip conditions calibrate --ship`"):
        load_shipped_calibrations(path, "b" * 64)
    screener = Screener(StaticConditions(["a", "b", "c"], ["other"] * 3, conds), rules=[], shipped=shipped)
    img = np.array([0.8, 0.6, 0, 0, 0, 0, 0, 0], np.float32)
    _, cos, conf, calibrated = screener.score(img)
    assert calibrated.tolist() == [True, False, False]
    assert conf[0, 0] == pytest.approx(1 / (1 + np.exp(-(20.0 * 0.8 - 10.0))), rel=1e-5)
    edited = conds.copy()
    edited[0] = l2_normalise(conds[0] + 0.2 * conds[1])  # the condition's prompts changed: its fit is stale
    stale = Screener(StaticConditions(["a", "b", "c"], ["other"] * 3, edited), rules=[], shipped=shipped)
    assert not stale.score(img)[3].any()


def test_fit_needs_enough_patients_and_never_ships_a_backwards_slope() -> None:
    rng = np.random.default_rng(0)
    n = 200
    imgs = l2_normalise(rng.standard_normal((n, 4)))
    cond = np.eye(2, 4, dtype=np.float32)
    y_good = (imgs[:, 0] + 0.3 * rng.standard_normal(n) > 0.4).astype(float)
    y_back = (imgs[:, 1] < -0.3).astype(float)  # higher cosine, fewer positives: a backwards fit
    labels = np.stack([y_good, y_back], axis=1)
    one_patient_each = [f"p{i}" for i in range(n)]
    fits = fit_calibration(imgs, labels, ["good", "back"], cond, patients=one_patient_each)
    assert fits["good"].scale > 0
    prevalence = y_back.mean()
    assert fits["back"].scale == 0.0 and 1 / (1 + np.exp(-fits["back"].bias)) == pytest.approx(prevalence)
    few = np.where(
        y_good > 0, "pos" + (np.arange(n) % 4).astype(str), one_patient_each
    )  # positives: 4 patients
    assert "good" not in fit_calibration(imgs, labels, ["good", "back"], cond, patients=list(few))


def test_condition_labels_follow_the_documented_populations() -> None:
    frame = pd.DataFrame({
        "source": ["nih", "covid", "covid", "covid", "hannover", "kermany", "kermany", "kermany", "actualmed"],
        "finding": ["Effusion", "COVID-19, ARDS", "Streptococcus", "", "COVID-19", "Pneumonia (viral)", "No finding",
                    "Pneumonia (bacterial)", "No finding"],
        "no_finding": [0, 0, 0, None, 0, 0, 1, 0, 1],
        "Effusion": [1, None, None, None, None, None, None, None, None],
    })  # fmt: skip
    labels = condition_labels(frame)
    nan = np.nan
    np.testing.assert_array_equal(labels[COVID], [0, 1, 0, nan, 1, nan, nan, nan, 0])
    np.testing.assert_array_equal(labels[PEDIATRIC_PNEUMONIA], [nan, nan, nan, nan, nan, 1, 0, 1, nan])
    np.testing.assert_array_equal(
        labels["no_finding"], [0, 0, 0, nan, 0, nan, nan, nan, 1]
    )  # kermany left out
    np.testing.assert_array_equal(labels["Effusion"], [1, nan, nan, nan, nan, nan, nan, nan, nan])


def test_uncalibrated_findings_rank_after_calibrated_ones_and_say_so() -> None:
    findings = [
        Finding("miliary_pattern", "parenchymal", 0.4, 0.93, calibrated=False),
        Finding("Effusion", "pleural", 0.3, 0.12, calibrated=True),
        Finding("no_finding", "normal", 0.3, 0.55, calibrated=True),
        Finding("rib_fracture", "osseous", 0.2, 0.40, calibrated=False),
        Finding("aortic_unfolding", "cardiomediastinal", 0.5, 0.99, calibrated=True, suppressed=True),
    ]
    caveats = rank_findings(findings)
    assert [f.name for f in findings] == [
        "no_finding",
        "Effusion",
        "miliary_pattern",
        "rib_fracture",
        "aortic_unfolding",
    ]
    assert [UNCALIBRATED_NOTE in f.notes for f in findings] == [False, False, True, True, False]
    assert len(caveats) == 1 and caveats[0].startswith("2 of 5 conditions have no calibration")


def test_screener_output_puts_a_low_calibrated_probability_above_a_high_similarity() -> None:
    conds = np.eye(2, 4, dtype=np.float32)
    screener = Screener(StaticConditions(["rare", "common"], ["other"] * 2, conds), rules=[],
                        calibrations={"common": LogisticCalibration(1.0, -3.0, 50, 500)})  # fmt: skip
    res = screener.screen(np.array([1.0, 0.0, 0, 0], np.float32))  # "rare" cosine 1.0 -> default mapping 1.0
    by = {f.name: f for f in res.findings}
    assert by["rare"].confidence > 0.99 > 0.1 > by["common"].confidence
    assert [f.name for f in res.findings] == ["common", "rare"] and UNCALIBRATED_NOTE in by["rare"].notes
    assert any("ranked after the calibrated ones" in c for c in res.caveats)


def test_an_image_blind_fit_is_withheld_not_shown_as_a_finding() -> None:
    """A slope-0 (base-rate) fit gives every image the same number: the finding is suppressed with the reason."""
    conds = l2_normalise(np.eye(3, 4, dtype=np.float32))
    fits = {"blind": LogisticCalibration(0.0, float(np.log(0.72 / 0.28)), 361, 143),
            "good": LogisticCalibration(8.0, -2.0, 20, 200)}  # fmt: skip
    screener = Screener(StaticConditions(["blind", "good", "plain"], ["other"] * 3, conds), rules=[], calibrations=fits)
    imgs = l2_normalise(np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32))
    results = screener.screen_batch(imgs, [None] * 5)
    blind_conf = {round(next(f for f in r.findings if f.name == "blind").confidence, 4) for r in results}
    assert blind_conf == {0.72}  # the same for every image: why it is withheld
    for r in results:
        assert [f.name for f in r.findings][-1] == "blind"  # suppressed findings rank last
        blind = r.findings[-1]
        assert blind.suppressed and "image_blind_calibration" in blind.notes
        note = next(n for n in r.rules if n.condition == "blind")
        assert note.action == "suppressed" and "ranked it backwards" in note.reason and "72%" in note.reason
        assert not any(f.suppressed for f in r.findings if f.name != "blind")
        assert "blind" not in [f.name for f in r.top(3)]
