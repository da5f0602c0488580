"""Clinical rules applied after scoring. Each rule is a small named object with a reason.

A rule gets the scored findings and the study context (age, sex, view) and may lower a
confidence (never raise it), mark a finding suppressed, or attach a caveat. Every change
is returned as a :class:`RuleNote` carrying the rule's name and a human reason, and the
notes end up in the screening output. :func:`default_rules` lists the shipped rules in the
order they run ("no finding" exclusivity last, so it sees the other rules' adjustments).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

NO_FINDING = "no_finding"
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLD", "RLD"})
AP_VIEWS = frozenset({"AP", "AP SUPINE", "APS", "SUPINE"})


@dataclass
class Finding:
    name: str
    category: str
    cosine: float  # image-text cosine similarity
    confidence: float  # in [0, 1], after calibration and rules
    calibrated: bool  # False: the documented default mapping was used
    suppressed: bool = False  # a rule judged it implausible for this study
    notes: list[str] = field(default_factory=list)  # names of the rules that touched it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StudyContext:
    age_years: float | None = None  # None: unknown, age rules do nothing
    sex: str | None = None  # "M" | "F" | other/None (sex rules do nothing)
    view: str | None = None  # DICOM ViewPosition or manifest view: "PA", "AP", "LL", ...

    @property
    def view_norm(self) -> str | None:
        return self.view.strip().upper() if self.view else None


@dataclass(frozen=True)
class RuleNote:
    rule: str  # the rule's name
    condition: str | None  # None: a study-level caveat
    action: str  # "suppressed" | "capped" | "downweighted" | "caveat"
    reason: str
    before: float | None = None
    after: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Rule(Protocol):
    name: str

    def apply(self, findings: list[Finding], ctx: StudyContext) -> list[RuleNote]: ...


def _lower(f: Finding, rule: str, new: float, action: str, reason: str) -> RuleNote:
    before = f.confidence
    f.confidence = float(min(f.confidence, max(new, 0.0)))
    f.notes.append(rule)
    return RuleNote(rule, f.name, action, reason, round(before, 4), round(f.confidence, 4))


@dataclass
class AgeAppropriateRule:
    """Suppress findings that do not occur below a minimum age (e.g. aortic unfolding in a child)."""

    name: str = "age_appropriate"
    min_age: dict[str, float] = field(default_factory=lambda: {
        "aortic_unfolding": 18.0,  # the aorta unfolds with age-related elastin loss
        "aortic_calcification": 18.0,  # atherosclerotic calcification is an adult finding
        "pleural_plaques": 18.0,  # asbestos plaques need 20+ years' latency after exposure
        "Emphysema": 18.0,  # radiographic emphysema is essentially absent in children
    })  # fmt: skip
    cap: float = 0.05  # confidence left to a suppressed finding

    def apply(self, findings: list[Finding], ctx: StudyContext) -> list[RuleNote]:
        if ctx.age_years is None:
            return []
        notes = []
        for f in findings:
            limit = self.min_age.get(f.name)
            if limit is not None and ctx.age_years < limit:
                f.suppressed = True
                notes.append(_lower(f, self.name, self.cap, "suppressed",
                                    f"{f.name} is not expected below age {limit:g} (patient {ctx.age_years:g})"))  # fmt: skip
        return notes


@dataclass
class SexSpecificRule:
    """Down-weight anatomy-specific findings unlikely for the recorded sex (not suppressed: they occur)."""

    name: str = "sex_specific"
    mostly_female: tuple[str, ...] = ("breast_implants", "mastectomy")
    factor: float = 0.5  # multiplier for a male patient

    def apply(self, findings: list[Finding], ctx: StudyContext) -> list[RuleNote]:
        if (ctx.sex or "").upper() != "M":
            return []
        return [
            _lower(f, self.name, f.confidence * self.factor, "downweighted",
                   f"{f.name} is uncommon in male patients; confirm it is not a soft-tissue or pectoral asymmetry")
            for f in findings if f.name in self.mostly_female
        ]  # fmt: skip


@dataclass
class ViewCaveatRule:
    """AP projection magnifies the heart and mediastinum; lateral views are out of distribution."""

    name: str = "view_caveats"
    ap_magnified: tuple[str, ...] = ("Cardiomegaly", "widened_mediastinum", "pericardial_effusion")
    ap_factor: float = 0.85  # mild down-weight of magnification-prone findings on AP films

    def apply(self, findings: list[Finding], ctx: StudyContext) -> list[RuleNote]:
        view = ctx.view_norm
        if view in LATERAL_VIEWS:
            for f in findings:
                f.notes.append(self.name)
            return [RuleNote(self.name, None, "caveat",
                             f"{view} is a lateral view: the models were trained on frontal (PA/AP) films, "
                             "so every score on this image is out of distribution and unreliable")]  # fmt: skip
        if view in AP_VIEWS:
            return [
                _lower(f, self.name, f.confidence * self.ap_factor, "downweighted",
                       f"AP projection magnifies the heart and mediastinum; {f.name} is overestimated on AP films")
                for f in findings if f.name in self.ap_magnified
            ]  # fmt: skip
        return []


@dataclass
class NoFindingExclusiveRule:
    """"No finding" cannot stand beside a confident pathology: cap it at 1 - the strongest positive."""

    name: str = "no_finding_exclusive"
    threshold: float = 0.5  # a finding at or above this confidence counts as positive
    # Devices are not pathology: a normal chest with a well-placed line is still "no finding".
    ignore_categories: tuple[str, ...] = ("devices_lines", "normal")

    def apply(self, findings: list[Finding], ctx: StudyContext) -> list[RuleNote]:
        nf = next((f for f in findings if f.name == NO_FINDING), None)
        if nf is None:
            return []
        positives = [f for f in findings if f.name != NO_FINDING and not f.suppressed
                     and f.category not in self.ignore_categories and f.confidence >= self.threshold]  # fmt: skip
        if not positives:
            return []
        top = max(positives, key=lambda f: f.confidence)
        cap = 1.0 - top.confidence
        if nf.confidence <= cap:
            return []
        return [_lower(nf, self.name, cap, "capped",
                       f"{top.name} is positive ({top.confidence:.2f}), so 'no finding' is capped at {cap:.2f}")]  # fmt: skip


def default_rules() -> list[Rule]:
    return [AgeAppropriateRule(), SexSpecificRule(), ViewCaveatRule(), NoFindingExclusiveRule()]
