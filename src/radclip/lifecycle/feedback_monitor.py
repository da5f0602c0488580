"""Live AUC from radiologist feedback, per served version, and the automatic rollback rule.

Over a sliding window of the most recent ``WINDOW_STUDIES`` studies with feedback, each version's
per-condition AUC is exported to Prometheus. A canary or shadow version is compared with production
**on the same studies** (both predictions are logged for every study it served or shadowed) with the
release gate's statistics: :func:`radclip.eval.metrics.paired_auc_difference` (paired, stratified
patient bootstrap) and the gate's threshold ``MAX_AUC_DROP`` (0.02). The rule is the gate's: roll back
when an existing condition's AUC drop exceeds 0.02 **and** the 95% CI of the drop excludes 0. Live,
it also needs ``MIN_LIVE_PATIENTS`` positive and as many negative patients on the paired studies
(the offline gate asks 3 / 3 for a number to be reported; an automatic action asks more, so a couple
of disputed reads cannot retire a model). A rollback retires the version, refreshes the lifecycle,
sets ``radclip_auto_rollback`` (the alert) and is written to the stage history with the condition.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from radclip.engine.feedback import FeedbackStore
from radclip.engine.served_predictions import PredictionLog
from radclip.eval.gate import MAX_AUC_DROP, is_significant_drop
from radclip.eval.metrics import paired_auc_difference, patient_counts, roc_auc

log = logging.getLogger(__name__)
WINDOW_STUDIES = 500  # the sliding window: most recent studies with feedback
MIN_LIVE_PATIENTS = 10  # positive and negative patients each, on the paired studies, before any rollback
N_BOOT = 1000  # the gate's bootstrap size


@dataclass(frozen=True)
class Rollback:
    ref: str
    condition: str
    auc_production: float
    auc_candidate: float
    ci: tuple[float, float]
    n_pos_patients: int
    n_neg_patients: int

    def reason(self) -> str:
        return (f"automatic rollback: {self.condition} AUC {self.auc_production:.3f} -> {self.auc_candidate:.3f} against production "
                f"on the same studies (drop > {MAX_AUC_DROP}, 95% CI {self.ci[0]:+.3f}..{self.ci[1]:+.3f} excludes 0; "
                f"{self.n_pos_patients} pos / {self.n_neg_patients} neg patients)")  # fmt: skip


def drop_verdict(y: np.ndarray, production: np.ndarray, candidate: np.ndarray, groups: np.ndarray,
                 n_boot: int = N_BOOT, seed: int = 17) -> dict[str, Any] | None:  # fmt: skip
    """The paired comparison when the rule fires (measurable, drop > 0.02, CI excludes 0), else None."""
    pos, neg = patient_counts(y[(y == 0) | (y == 1)], groups[(y == 0) | (y == 1)])
    if pos < MIN_LIVE_PATIENTS or neg < MIN_LIVE_PATIENTS:
        return None
    known = (y == 0) | (y == 1)
    if roc_auc(y[known], production[known]) - roc_auc(y[known], candidate[known]) <= MAX_AUC_DROP:
        return None  # the point estimate alone clears it: skip the bootstrap
    diff = paired_auc_difference(y, production, candidate, groups, n_boot=n_boot, seed=seed)
    fires = is_significant_drop(diff, MAX_AUC_DROP) and diff["ci_low"] is not None
    return diff if fires else None


class FeedbackMonitor:
    """Evaluate the window on a background thread whenever feedback arrives (requests coalesce)."""

    def __init__(self, lifecycle: Any, feedback: FeedbackStore, predictions: PredictionLog, registry: Any | None = None,
                 window: int = WINDOW_STUDIES, n_boot: int = N_BOOT) -> None:  # fmt: skip
        self.lifecycle, self.feedback, self.predictions = lifecycle, feedback, predictions
        self.window, self.n_boot = window, n_boot
        self.rollbacks: list[Rollback] = []
        self.evaluations = 0
        self._wake, self._done = threading.Event(), threading.Condition()
        self._gauges = _gauges(registry) if registry is not None else None
        threading.Thread(target=self._loop, name="radclip-feedback", daemon=True).start()

    def request_evaluation(self) -> None:
        self._wake.set()

    def wait_for(self, evaluations: int, timeout_s: float = 60.0) -> bool:
        with self._done:
            return self._done.wait_for(lambda: self.evaluations >= evaluations, timeout_s)

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self.evaluate()
            except Exception as exc:  # monitoring must not take the service down; the next feedback retries
                log.error("live AUC evaluation failed: %s", exc)
            with self._done:
                self.evaluations += 1
                self._done.notify_all()

    def live_scores(self) -> tuple[Any, dict[str, dict[str, dict[str, float]]]]:
        """The window's labels and ``{ref: {study_key: scores}}`` of every version that saw those studies."""
        labels = self.feedback.window(self.window)
        by_ref: dict[str, dict[str, dict[str, float]]] = {}
        for p in self.predictions.for_studies(labels.study_keys, self.lifecycle.name):
            by_ref.setdefault(p.ref, {})[p.study_key] = p.scores
        return labels, by_ref

    def evaluate(self) -> list[Rollback]:
        labels, by_ref = self.live_scores()
        for ref, scores in by_ref.items():
            self._export(ref, labels, scores)
        dep = self.lifecycle.deployment
        fired = []
        for cand in (dep.canary, dep.shadow):
            if cand is not None and cand.ref in by_ref and dep.production.ref in by_ref:
                found = self._compare(cand.ref, labels, by_ref[dep.production.ref], by_ref[cand.ref])
                if found is not None:
                    self._roll_back(found)
                    fired.append(found)
        return fired

    def _export(self, ref: str, labels: Any, scores: dict[str, dict[str, float]]) -> None:
        if self._gauges is None:
            return
        rows = [i for i, k in enumerate(labels.study_keys) if k in scores]
        self._gauges["studies"].labels(ref).set(len(rows))
        for j, name in enumerate(labels.names):
            y = labels.labels[rows, j]
            s = np.array([scores[labels.study_keys[i]].get(name, np.nan) for i in rows])
            known = ((y == 0) | (y == 1)) & np.isfinite(s)
            if known.any() and 0 < y[known].sum() < known.sum():
                self._gauges["auc"].labels(ref, name).set(roc_auc(y[known], s[known]))

    def _compare(
        self, ref: str, labels: Any, prod: dict[str, dict[str, float]], cand: dict[str, dict[str, float]]
    ) -> Rollback | None:
        rows = [i for i, k in enumerate(labels.study_keys) if k in prod and k in cand]
        groups = np.array([labels.patients[i] for i in rows])
        for j, name in enumerate(labels.names):
            if not rows or name not in prod[labels.study_keys[rows[0]]]:
                continue  # not a condition this model scores: nothing "existing" to compare
            y = labels.labels[rows, j]
            p = np.array([prod[labels.study_keys[i]][name] for i in rows])
            c = np.array([cand[labels.study_keys[i]][name] for i in rows])
            diff = drop_verdict(y, p, c, groups, self.n_boot, seed=17 + j)
            if diff is not None:
                return Rollback(ref, name, diff["auc_a"], diff["auc_b"], (diff["ci_low"], diff["ci_high"]),
                                diff["n_pos_patients"], diff["n_neg_patients"])  # fmt: skip
        return None

    def _roll_back(self, found: Rollback) -> None:
        log.error("%s: %s", found.ref, found.reason())
        self.lifecycle.stages.retire(found.ref, "auto-rollback", found.reason())
        self.lifecycle.refresh()
        self.rollbacks.append(found)
        if self._gauges is not None:
            self._gauges["rollback"].labels(found.ref, found.condition).set(1)


def _gauges(registry: Any) -> dict[str, Any]:
    from prometheus_client import Gauge

    return {
        "auc": Gauge("radclip_live_auc", "Per-condition AUC from radiologist feedback over the sliding window",
                     ["version", "condition"], registry=registry),
        "studies": Gauge("radclip_live_auc_studies", "Studies with feedback in the window that this version scored",
                         ["version"], registry=registry),
        "rollback": Gauge("radclip_auto_rollback", "1 when a version was rolled back automatically for this condition",
                          ["version", "condition"], registry=registry),
    }  # fmt: skip
