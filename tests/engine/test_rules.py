"""Each clinical rule on hand-made findings: exact confidences and reasons."""

from __future__ import annotations

import pytest

from radclip.engine.rules import (
    AgeAppropriateRule,
    Finding,
    NoFindingExclusiveRule,
    SexSpecificRule,
    StudyContext,
    ViewCaveatRule,
)


def f(name: str, conf: float, category: str = "parenchymal") -> Finding:
    return Finding(name, category, cosine=0.3, confidence=conf, calibrated=False)


def test_age_rule_suppresses_aortic_unfolding_in_children() -> None:
    items = [f("aortic_unfolding", 0.8, "cardiomediastinal"), f("Pneumonia", 0.7)]
    notes = AgeAppropriateRule().apply(items, StudyContext(age_years=7))
    assert items[0].confidence == 0.05 and items[0].suppressed and items[1].confidence == 0.7
    assert len(notes) == 1 and notes[0].action == "suppressed" and "below age 18" in notes[0].reason
    adult = [f("aortic_unfolding", 0.8)]
    assert AgeAppropriateRule().apply(adult, StudyContext(age_years=70)) == [] and adult[0].confidence == 0.8
    assert AgeAppropriateRule().apply(adult, StudyContext()) == []  # unknown age: no change


def test_sex_rule_downweights_breast_findings_in_men() -> None:
    items = [f("breast_implants", 0.6, "other"), f("mastectomy", 0.4, "other"), f("Nodule", 0.6)]
    notes = SexSpecificRule().apply(items, StudyContext(sex="M"))
    assert [x.confidence for x in items] == [pytest.approx(0.3), pytest.approx(0.2), 0.6]
    assert {n.condition for n in notes} == {"breast_implants", "mastectomy"} and not items[0].suppressed
    women = [f("breast_implants", 0.6)]
    assert SexSpecificRule().apply(women, StudyContext(sex="F")) == [] and women[0].confidence == 0.6


def test_view_rule_ap_magnification_and_lateral_caveat() -> None:
    items = [f("Cardiomegaly", 0.8, "cardiomediastinal"), f("Effusion", 0.8, "pleural")]
    notes = ViewCaveatRule().apply(items, StudyContext(view="ap"))
    assert items[0].confidence == pytest.approx(0.68) and items[1].confidence == 0.8
    assert "AP projection magnifies" in notes[0].reason
    lat = [f("Cardiomegaly", 0.8)]
    notes = ViewCaveatRule().apply(lat, StudyContext(view="LL"))
    assert notes[0].condition is None and "out of distribution" in notes[0].reason
    assert lat[0].confidence == 0.8 and lat[0].notes == ["view_caveats"]
    assert ViewCaveatRule().apply([f("Cardiomegaly", 0.8)], StudyContext(view="PA")) == []


def test_no_finding_capped_by_strongest_positive() -> None:
    items = [f("no_finding", 0.9, "normal"), f("Pneumothorax", 0.7, "pleural"), f("Nodule", 0.55),
             f("ett_good_position", 0.99, "devices_lines")]  # fmt: skip
    notes = NoFindingExclusiveRule().apply(items, StudyContext())
    assert items[0].confidence == pytest.approx(0.3) and "Pneumothorax is positive" in notes[0].reason
    devices_only = [f("no_finding", 0.9, "normal"), f("ett_good_position", 0.99, "devices_lines")]
    assert NoFindingExclusiveRule().apply(devices_only, StudyContext()) == []  # devices are not pathology
    low = [f("no_finding", 0.9, "normal"), f("Nodule", 0.4)]
    assert NoFindingExclusiveRule().apply(low, StudyContext()) == [] and low[0].confidence == 0.9
