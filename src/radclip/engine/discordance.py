"""Discordant served studies: where two model versions, or a model and the radiologists, disagree on a finding.

A finding is *called* when its probability is at or above its operating point. A study is
discordant when, for some finding,

* **model**: production's call differs from a canary's or shadow's call on the same study (the
  rollout's review queue: a finding flips across its operating threshold), or
* **feedback**: production's call (the canary's when production did not score the study) differs
  from the readers' majority label.

Pure: the caller passes the logged predictions, the feedback labels and the operating points
(``integrations.operating_points`` decides them; this module only compares).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from radclip.engine.served_predictions import Prediction

ANSWERING = ("production", "canary")  # roles whose prediction was the response (shadow only logs)


@dataclass(frozen=True)
class VersionCall:
    ref: str  # name@version
    role: str
    probability: float
    called: bool


@dataclass(frozen=True)
class DiscordantFinding:
    finding: str
    threshold: float
    calls: list[VersionCall]
    feedback: bool | None  # readers' majority; None when no feedback or a tie
    kinds: list[str]  # "model" and/or "feedback"


@dataclass(frozen=True)
class DiscordantStudy:
    study_key: str
    findings: list[DiscordantFinding] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _feedback_for(labels: Mapping[str, Mapping[str, float]], key: str, finding: str) -> bool | None:
    v = labels.get(key, {}).get(finding)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else bool(v)


def _finding(
    name: str, preds: list[Prediction], threshold: float, feedback: bool | None
) -> DiscordantFinding | None:
    calls = [
        VersionCall(p.ref, p.role, p.scores[name], p.scores[name] >= threshold)
        for p in preds
        if name in p.scores
    ]
    production = [c.called for c in calls if c.role == "production"]
    others = [c.called for c in calls if c.role != "production"]
    kinds = []
    if production and any(o != production[0] for o in others):
        kinds.append("model")
    answered = [c.called for c in calls if c.role in ANSWERING]
    if feedback is not None and answered and answered[0] != feedback:
        kinds.append("feedback")
    return DiscordantFinding(name, threshold, calls, feedback, kinds) if kinds else None


def find_discordant(
    predictions: list[Prediction],
    thresholds: Mapping[str, float],
    labels: Mapping[str, Mapping[str, float]] | None = None,
) -> list[DiscordantStudy]:
    """Discordant studies, newest first (``predictions`` are in log order); ``labels``: study -> finding -> 1/0/NaN."""
    by_study: dict[str, list[Prediction]] = {}
    for p in predictions:
        by_study.setdefault(p.study_key, []).append(p)
    out = []
    for key in reversed(by_study):
        preds = sorted(by_study[key], key=lambda p: ("production", "canary", "shadow").index(p.role)
                       if p.role in ("production", "canary", "shadow") else 3)  # fmt: skip
        found = [f for name, t in thresholds.items()
                 if (f := _finding(name, preds, t, _feedback_for(labels or {}, key, name))) is not None]  # fmt: skip
        if found:
            out.append(DiscordantStudy(key, found))
    return out
