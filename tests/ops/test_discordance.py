"""The review queue's rule on hand-made predictions: a finding flips across its operating point, or feedback disagrees."""

from __future__ import annotations

import numpy as np

from radclip.engine.discordance import find_discordant
from radclip.engine.served_predictions import Prediction

T = {"Effusion": 0.5, "Mass": 0.3}


def _p(key: str, role: str, eff: float, mass: float, version: str = "1") -> Prediction:
    return Prediction(
        key, "m", version if role == "production" else "2", role, {"Effusion": eff, "Mass": mass}
    )


def test_flip_across_the_operating_point_is_discordant_and_a_same_side_change_is_not() -> None:
    preds = [
        _p("a", "production", 0.49, 0.10), _p("a", "shadow", 0.51, 0.29),  # Effusion flips; Mass moves but stays below 0.3
        _p("b", "production", 0.90, 0.31), _p("b", "canary", 0.60, 0.30),  # both called on both sides: 0.30 >= 0.3
        _p("c", "canary", 0.10, 0.50), _p("c", "production", 0.70, 0.50),  # canary answered; production disagrees
    ]  # fmt: skip
    out = find_discordant(preds, T)
    assert [s.study_key for s in out] == ["c", "a"]  # newest first; b is concordant
    (fa,) = out[1].findings
    assert fa.finding == "Effusion" and fa.kinds == ["model"] and fa.feedback is None
    assert [(c.role, c.called) for c in fa.calls] == [("production", False), ("shadow", True)]
    (fc,) = out[0].findings
    assert fc.finding == "Effusion" and [c.role for c in fc.calls] == ["production", "canary"]


def test_feedback_disagreeing_with_production_is_discordant_and_a_tie_is_ignored() -> None:
    preds = [
        _p("a", "production", 0.8, 0.1),
        _p("b", "production", 0.8, 0.1),
        _p("c", "production", 0.2, 0.1),
    ]
    labels = {"a": {"Effusion": 0.0}, "b": {"Effusion": 1.0, "Mass": float("nan")}, "c": {"Mass": 1.0}}
    out = {s.study_key: s for s in find_discordant(preds, T, labels)}
    assert set(out) == {"a", "c"}
    assert out["a"].findings[0].kinds == ["feedback"] and out["a"].findings[0].feedback is False
    assert out["c"].findings[0].finding == "Mass" and out["c"].findings[0].feedback is True
    d = out["a"].to_dict()
    assert d["findings"][0]["calls"][0] == {
        "ref": "m@1",
        "role": "production",
        "probability": 0.8,
        "called": True,
    }
    assert np.isclose(d["findings"][0]["threshold"], 0.5)
