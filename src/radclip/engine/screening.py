"""Zero-shot screening: image embedding vs every active condition, calibrated, then clinical rules.

``Screener.screen(image_emb, context)`` computes the cosine of the (L2-normalised) image
embedding against each active condition's ensembled prompt embedding, maps each cosine
to a confidence with that condition's fitted logistic (or the documented default, marked
``calibrated: false``; see :mod:`radclip.engine.calibration`), applies the rules from
:mod:`radclip.engine.rules`, and returns findings ranked by confidence with every rule's
reason. The condition matrix is taken from a :class:`ConditionSource` (the
:class:`~radclip.engine.registry.PromptRegistry`, or :class:`StaticConditions`) and
re-read at most every ``refresh_s`` seconds or when the registry object reports a change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from radclip.engine.calibration import (
    DEFAULT_CALIBRATION,
    LogisticCalibration,
    ReferenceDistribution,
    ShippedCalibrations,
    fit_calibration,
    load_calibrations,
    save_calibrations,
)
from radclip.engine.encoders import l2_normalise
from radclip.engine.registry import ConditionMatrix
from radclip.engine.rules import Finding, Rule, RuleNote, StudyContext, default_rules


def _cosines(embs: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, K) dot products. For a few images, einsum's plain loop: a multi-threaded BLAS gemv
    on a busy 2-core host was measured at ~15 ms for 1,000 conditions against ~0.2 ms here."""
    if len(embs) <= 8:
        return np.einsum("nd,kd->nk", embs, matrix, optimize=False)
    return embs @ matrix.T


UNCALIBRATED_NOTE = "uncalibrated: similarity only"


def rank_findings(findings: list[Finding]) -> list[str]:
    """Sort in place: calibrated findings by probability, then uncalibrated ones by score, suppressed last.

    An uncalibrated confidence is a similarity score, not a probability, so it is never ranked
    above a calibrated one: a rare condition with no fit cannot outrank a common calibrated
    finding on a number that means something else. Each uncalibrated finding is marked with
    :data:`UNCALIBRATED_NOTE`; returns the study-level caveat that says so (empty if none).
    """
    findings.sort(key=lambda f: (f.suppressed, not f.calibrated, -f.confidence))
    unmarked = [f for f in findings if not f.calibrated]
    for f in unmarked:
        if UNCALIBRATED_NOTE not in f.notes:
            f.notes.append(UNCALIBRATED_NOTE)
    if not unmarked or len(unmarked) == len(findings):
        return [f"no condition is calibrated: confidences are similarity scores ({UNCALIBRATED_NOTE})"] if unmarked else []
    return [f"{len(unmarked)} of {len(findings)} conditions have no calibration and are ranked after the calibrated ones; "
            f"their confidence is a similarity score, not a probability ({UNCALIBRATED_NOTE})"]  # fmt: skip


IMAGE_BLIND_RULE = "image_blind_calibration"


def withhold_image_blind(f: Finding) -> RuleNote:
    """Suppress a finding whose calibration is only a base rate (its fit found a negative slope).

    The model ranked the condition backwards on the validation split, so the fit fell back to the
    split's prevalence: the same number for every image. Shown as a confidence it would read as a
    finding (0.72 for pediatric pneumonia on every study, adults included); it is withheld instead.
    """
    f.suppressed = True
    f.notes.append(IMAGE_BLIND_RULE)
    return RuleNote(IMAGE_BLIND_RULE, f.name, "suppressed",
                    f"{f.name} is withheld: on validation data this model ranked it backwards, so its calibration is "
                    f"the base rate ({f.confidence:.0%}), the same for every image; it needs a model that separates it "
                    "(docs/engine.md, shipped calibrations)", round(f.confidence, 4), round(f.confidence, 4))  # fmt: skip


class ConditionSource(Protocol):
    def condition_matrix(self, text_version: str | None = None) -> ConditionMatrix: ...


class StaticConditions:
    """A fixed condition matrix (benchmarks, tests, or a frozen export of the registry)."""

    def __init__(self, names: Sequence[str], categories: Sequence[str], matrix: np.ndarray, text_version: str = "static"):
        self._m = ConditionMatrix(list(names), list(categories), [1] * len(names), list(range(len(names))),
                                  l2_normalise(matrix), text_version)  # fmt: skip
        self.changes = 0

    def condition_matrix(self, text_version: str | None = None) -> ConditionMatrix:
        return self._m


@dataclass
class ScreeningResult:
    findings: list[Finding]  # ranked by confidence, best first
    rules: list[RuleNote]  # every adjustment or caveat, in the order applied
    caveats: list[str]  # study-level caveats (reasons of notes with no condition)
    text_version: str
    image_version: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    registry_version: str = ""  # state token of the condition set that was scored

    def top(self, n: int = 5, include_suppressed: bool = False) -> list[Finding]:
        return [f for f in self.findings if include_suppressed or not f.suppressed][:n]

    def to_dict(self) -> dict[str, Any]:
        return {
            "findings": [f.to_dict() for f in self.findings],
            "rules": [r.to_dict() for r in self.rules],
            "caveats": list(self.caveats),
            "text_version": self.text_version,
            "image_version": self.image_version,
            "timings_ms": dict(self.timings_ms),
            "registry_version": self.registry_version,
        }


class Screener:
    """Scores images against the registered conditions; one per service, shared across requests."""

    def __init__(
        self,
        conditions: ConditionSource,
        rules: Sequence[Rule] | None = None,
        calibrations: dict[str, LogisticCalibration] | None = None,
        image_version: str = "unknown",
        text_version: str | None = None,
        refresh_s: float = 2.0,
        shipped: ShippedCalibrations | None = None,
    ) -> None:
        self.conditions = conditions
        self.rules = list(default_rules() if rules is None else rules)
        self.image_version = image_version
        self.text_version = text_version
        self.refresh_s = refresh_s  # how stale the condition matrix may get (other processes' changes)
        self._explicit_cals = dict(calibrations or {})
        self._shipped = shipped  # fits shipped beside the model; the database's own fits override them
        self._state: tuple[ConditionMatrix, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._cals: dict[str, LogisticCalibration] = {}
        self._loaded_at = 0.0
        self._seen_changes = -1
        self._reference: ReferenceDistribution | None = None
        # Held while the state is rebuilt or its inputs (reference, fits) change, so a rebuild that began
        # before set_reference cannot store its stale result after it. Scoring reads the state without it.
        self._state_lock = threading.RLock()

    # -- state ----------------------------------------------------------------------------
    def _engine(self) -> Any:
        return getattr(self.conditions, "engine", None)

    def matrix(self) -> ConditionMatrix:
        return self._current()[0]

    def _current(self) -> tuple[ConditionMatrix, np.ndarray, np.ndarray, np.ndarray]:
        """(matrix, scale, bias, calibrated) swapped as one tuple, so concurrent requests never mix states."""
        changes = getattr(self.conditions, "changes", 0)
        state = self._state
        if state is not None and changes == self._seen_changes and time.monotonic() - self._loaded_at < self.refresh_s:
            return state
        with self._state_lock:
            state = self._state
            m = self.conditions.condition_matrix(self.text_version)
            if state is None or m is not state[0]:
                vids = dict(zip(m.names, m.version_ids, strict=True))
                stored = load_calibrations(self._engine(), vids, m.text_version, self.image_version) if self._engine() else {}
                shipped = self._shipped.matching(m.names, m.matrix) if self._shipped is not None else {}
                self._cals = {**shipped, **stored, **{k: v for k, v in self._explicit_cals.items() if k in vids}}
                state = self._state = self._with_arrays(m)
            self._loaded_at, self._seen_changes = time.monotonic(), changes
            return state

    def fit_calibration(self, image_embs: np.ndarray, label_matrix: np.ndarray, names: Sequence[str],
                        persist: bool = True, patients: Sequence[str] | None = None) -> dict[str, LogisticCalibration]:  # fmt: skip
        """Fit a logistic per named condition on a validation split (labels 1/0/NaN), use it from now on.

        With a registry as the source the fits are stored, keyed by condition version and both
        model versions.
        """
        m = self.matrix()
        unknown = [n for n in names if n not in m.names]
        if unknown:
            raise KeyError(f"not active conditions: {unknown}; register them or drop those label columns")
        rows = [m.names.index(n) for n in names]
        cals = fit_calibration(image_embs, label_matrix, names, m.matrix[rows], patients=patients)
        if persist and self._engine() is not None:
            vids = dict(zip(m.names, m.version_ids, strict=True))
            save_calibrations(self._engine(), vids, cals, m.text_version, self.image_version)
        with self._state_lock:
            self._explicit_cals.update(cals)
            self._cals.update(cals)
            self._state = self._with_arrays(m)
        return cals

    def set_reference(self, reference: ReferenceDistribution | None) -> None:
        """Use ``reference`` (the train-split statistics shipped with the model, :mod:`radclip.engine.reference`)
        for conditions without a labelled fit. Never the served corpus: that is the holdout."""
        with self._state_lock:  # waits for a rebuild in flight, which would otherwise store the old mapping
            self._reference = reference
            self._state = None  # rebuilt on the next request

    def _with_arrays(self, m: ConditionMatrix) -> tuple[ConditionMatrix, np.ndarray, np.ndarray, np.ndarray]:
        """Per-condition (scale, bias, calibrated) vectors aligned with the matrix rows.

        Order of preference: a labelled logistic fit; else the reference-population z mapping;
        else the fixed default. Only the first counts as ``calibrated``.
        """
        cals = [self._cals.get(n) for n in m.names]
        scale = np.array([(c or DEFAULT_CALIBRATION).scale for c in cals], np.float32)
        bias = np.array([(c or DEFAULT_CALIBRATION).bias for c in cals], np.float32)
        fitted = np.array([c is not None for c in cals], bool)
        if self._reference is not None and len(m.names) and not fitted.all():
            ref_scale, ref_bias = self._reference.mapping(m.matrix)
            scale, bias = np.where(fitted, scale, ref_scale), np.where(fitted, bias, ref_bias)
        return m, scale, bias, fitted

    # -- scoring --------------------------------------------------------------------------
    def score(self, image_embs: np.ndarray) -> tuple[ConditionMatrix, np.ndarray, np.ndarray, np.ndarray]:
        """(matrix, cosines (N, K), confidences (N, K), calibrated mask (K,)) before rules."""
        return self._score(image_embs)[:4]

    def _score(self, image_embs: np.ndarray) -> tuple[ConditionMatrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`score` plus the image-blind mask (K,): fits with slope 0, i.e. only a base rate."""
        m, scale, bias, calibrated = self._current()
        embs = l2_normalise(np.atleast_2d(np.asarray(image_embs, np.float32)))
        if m.matrix.shape[0] and embs.shape[1] != m.matrix.shape[1]:
            raise ValueError(f"image embedding has dim {embs.shape[1]} but conditions have {m.matrix.shape[1]}; "
                             "image and text models must come from the same image-text model")  # fmt: skip
        cos = _cosines(embs, m.matrix)
        conf = 1.0 / (1.0 + np.exp(-np.clip(cos * scale + bias, -60, 60)))
        return m, cos, conf.astype(np.float32), calibrated, calibrated & (scale == 0)

    def screen(self, image_emb: np.ndarray, context: StudyContext | None = None) -> ScreeningResult:
        return self.screen_batch(np.atleast_2d(image_emb), [context])[0]

    def screen_batch(self, image_embs: np.ndarray, contexts: Sequence[StudyContext | None]) -> list[ScreeningResult]:
        t0 = time.perf_counter()
        m, cos, conf, calibrated, blind = self._score(image_embs)
        t_score = (time.perf_counter() - t0) * 1000
        out = []
        for i, ctx in enumerate(contexts):
            t1 = time.perf_counter()
            findings = [Finding(n, c, float(cos[i, j]), float(conf[i, j]), bool(calibrated[j]))
                        for j, (n, c) in enumerate(zip(m.names, m.categories, strict=True))]  # fmt: skip
            notes: list[RuleNote] = [withhold_image_blind(findings[j]) for j in np.flatnonzero(blind)]
            for rule in self.rules:
                notes.extend(rule.apply(findings, ctx or StudyContext()))
            caveats = [n.reason for n in notes if n.condition is None] + rank_findings(findings)
            timings = {"score_ms": round(t_score, 3), "rules_ms": round((time.perf_counter() - t1) * 1000, 3)}
            out.append(ScreeningResult(findings, notes, caveats, m.text_version, self.image_version, timings, m.token))
        return out
