"""The rule-based report labeller on single sentences (negation, uncertainty, lists, no_finding)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from radclip.io.labeller import label_report, label_reports, split_sentences
from radclip.io.labels import REPORT_LABELS

CASES = [
    # (text, {label: expected}) - labels not listed must be NaN unless listed in ANY_OK
    ("no pleural effusion", {"Effusion": 0.0}),
    ("small left effusion", {"Effusion": 1.0, "no_finding": 0.0}),
    ("cannot exclude pneumothorax", {"Pneumothorax": -1.0, "no_finding": -1.0}),
    ("No displaced rib fractures, pneumothorax, or pleural effusion identified.", {"Pneumothorax": 0.0, "Effusion": 0.0, "no_finding": 1.0}),
    ("Heart size is normal.", {"Cardiomegaly": 0.0}),
    ("The heart is mildly enlarged.", {"Cardiomegaly": 1.0, "no_finding": 0.0}),
    ("Possible right lower lobe pneumonia.", {"Pneumonia": -1.0, "no_finding": -1.0}),
    ("Normal chest x-XXXX.", {"no_finding": 1.0}),
    ("The heart is not enlarged.", {"Cardiomegaly": 0.0}),
    ("Pneumothorax cannot be excluded.", {"Pneumothorax": -1.0, "no_finding": -1.0}),
    ("Pleural effusion and pneumothorax are not seen.", {"Effusion": 0.0, "Pneumothorax": 0.0, "no_finding": 1.0}),
    ("No pneumothorax is seen and there is mild cardiomegaly.", {"Pneumothorax": 0.0, "Cardiomegaly": 1.0, "no_finding": 0.0}),
    ("No focal consolidation to suggest pneumonia.", {"Consolidation": 0.0, "Pneumonia": 0.0, "no_finding": 1.0}),
    ("No interval change in the small left pleural effusion.", {"Effusion": 1.0, "no_finding": 0.0}),
    ("Left basilar opacity may represent atelectasis or pneumonia.", {"Atelectasis": -1.0, "Pneumonia": -1.0, "no_finding": -1.0}),
    ("Previously seen left pneumothorax has resolved.", {"Pneumothorax": 0.0}),
    ("There are no XXXX of a pleural effusion.", {"Effusion": 0.0}),
    ("Stable pericardial effusion.", {}),
    ("Subcutaneous emphysema in the left chest wall.", {}),
    ("Calcified granuloma in the right upper lobe.", {}),
    ("Small hiatal hernia.", {"Hernia": 1.0, "no_finding": 0.0}),
    ("Borderline cardiomegaly.", {"Cardiomegaly": -1.0, "no_finding": -1.0}),
    ("Mild pulmonary vascular congestion.", {"Edema": -1.0, "no_finding": -1.0}),
    ("Likely right middle lobe atelectasis.", {"Atelectasis": 1.0, "no_finding": 0.0}),
    ("Hyperinflated lungs consistent with COPD.", {"Emphysema": 1.0, "no_finding": 0.0}),
    ("Lungs are hyperexpanded.", {"Emphysema": -1.0, "no_finding": -1.0}),
    ("Blunting of the left costophrenic angle.", {"Effusion": -1.0, "no_finding": -1.0}),
    ("The lungs are clear without focal airspace disease, mass or nodule.", {"Infiltration": 0.0, "Mass": 0.0, "Nodule": 0.0, "no_finding": 1.0}),
    ("Heart size normal but there is a small right pleural effusion.", {"Cardiomegaly": 0.0, "Effusion": 1.0, "no_finding": 0.0}),
    ("Mass effect on the trachea.", {}),
    ("Biapical pleural thickening. Mild fibrotic changes at the bases.", {"Pleural_Thickening": 1.0, "Fibrosis": 1.0, "no_finding": 0.0}),
    ("No acute cardiopulmonary abnormality.", {"no_finding": 1.0}),
    ("", {}),
]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0][:40] or "empty" for c in CASES])
def test_sentence_labels(text: str, expected: dict[str, float]) -> None:
    got = label_report(text)
    assert set(got) == set(REPORT_LABELS)
    for name in REPORT_LABELS:
        want = expected.get(name, float("nan"))
        assert _same(got[name], want), f"{name}: got {got[name]}, want {want} for {text!r}"


def test_positive_beats_negative_across_sentences() -> None:
    got = label_report("No effusion on the right. Small left pleural effusion.")
    assert got["Effusion"] == 1.0


def test_label_reports_matrix_matches_label_report() -> None:
    texts = [c[0] for c in CASES]
    m = label_reports(texts)
    assert m.shape == (len(texts), 15) and m.dtype == np.float32
    for i, text in enumerate(texts):
        row = label_report(text)
        np.testing.assert_array_equal(m[i], np.array([row[n] for n in REPORT_LABELS], dtype=np.float32))
    assert label_reports([]).shape == (0, 15)


def test_sentence_split_keeps_decimals_and_normalises_xxxx() -> None:
    assert split_sentences("Nodule 1.5 cm. Normal chest x-XXXX; No XXXX effusion.") == ["nodule 1.5 cm.", "normal chest x-ray;", "no xxxx effusion."]
