"""Patient-level AUC statistics: counts, a bootstrap stratified by positive/negative patients, paired differences.

Why stratified: resampling all patients at once loses every positive now and then on rare findings;
discarding those resamples (as a plain bootstrap must) makes the CI conditional and too narrow. Here the
patients with at least one positive image (the positive stratum) and the others (the negative stratum)
are resampled separately, each to its own size, so every resample keeps both classes and none is discarded.
A resampled patient brings all their images (a multiplicity weight), and the AUC of a resample is the
weighted Mann-Whitney statistic, computed for all resamples at once.

An AUC is *measurable* only with >= ``MIN_PATIENTS`` positive and >= ``MIN_PATIENTS`` negative patients
(a negative patient is one with at least one negative image).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

MIN_PATIENTS = 3
ALPHA = 0.05


@dataclass(frozen=True)
class Counts:
    """Images and patients behind one AUC."""

    n_pos_images: int
    n_neg_images: int
    n_pos_patients: int  # patients with >= 1 positive image
    n_neg_patients: int  # patients with >= 1 negative image

    @property
    def measurable(self) -> bool:
        return self.n_pos_patients >= MIN_PATIENTS and self.n_neg_patients >= MIN_PATIENTS

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "measurable": self.measurable}


def _known(
    y: np.ndarray, scores: Sequence[np.ndarray], pid: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    y = np.asarray(y, np.float64)
    ok = ~np.isnan(y)
    for s in scores:
        ok &= np.isfinite(np.asarray(s, np.float64))
    return y[ok], [np.asarray(s, np.float64)[ok] for s in scores], np.asarray(pid)[ok]


def counts(y: np.ndarray, patient_ids: np.ndarray) -> Counts:
    """Positive/negative images and patients among the rows with a known label (NaN = unknown)."""
    y = np.asarray(y, np.float64)
    pid = np.asarray(patient_ids)
    ok = ~np.isnan(y)
    y, pid = y[ok], pid[ok]
    return Counts(int((y == 1).sum()), int((y == 0).sum()), len(set(pid[y == 1])), len(set(pid[y == 0])))


def weighted_auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC (ties count 1/2) of ``score`` for labels ``y`` under image weights ``(B, N)`` -> ``(B,)``."""
    order = np.argsort(score, kind="mergesort")
    s, yy, w = score[order], y[order], np.atleast_2d(weights)[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # first index of each tie group
    gp = np.add.reduceat(w * (yy == 1), starts, axis=1)
    gn = np.add.reduceat(w * (yy == 0), starts, axis=1)
    below = np.cumsum(gn, axis=1) - gn  # negative weight strictly below each group
    num = (gp * (below + 0.5 * gn)).sum(axis=1)
    den = gp.sum(axis=1) * gn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def patient_weights(y: np.ndarray, patient_ids: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, N)`` image weights: positive and negative patients resampled separately, with replacement."""
    pid = np.asarray(patient_ids)
    uniq, inverse = np.unique(pid, return_inverse=True)
    has_pos = np.zeros(len(uniq), bool)
    has_pos[inverse[np.asarray(y) == 1]] = True
    rng = np.random.default_rng(seed)
    per_patient = np.zeros((n_boot, len(uniq)))
    for stratum in (np.flatnonzero(has_pos), np.flatnonzero(~has_pos)):
        if len(stratum):
            per_patient[:, stratum] = rng.multinomial(
                len(stratum), np.full(len(stratum), 1 / len(stratum)), size=n_boot
            )
    return per_patient[:, inverse]


def bootstrap_aucs(
    y: np.ndarray, score: np.ndarray, patient_ids: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> np.ndarray:
    """The ``n_boot`` stratified patient-bootstrap AUCs (no resample is discarded)."""
    y, (s,), pid = _known(y, [score], patient_ids)
    return weighted_auc(y, s, patient_weights(y, pid, n_boot, seed))


def _interval(values: np.ndarray, alpha: float) -> tuple[float | None, float | None]:
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return None, None
    lo, hi = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def patient_stratified_bootstrap_auc(
    y: np.ndarray,
    score: np.ndarray,
    patient_ids: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = ALPHA,
) -> tuple[float | None, float | None, float | None, Counts]:
    """(AUC, CI low, CI high, counts); AUC is None without both classes, the CI None when ``n_boot`` is 0."""
    y, (s,), pid = _known(y, [score], patient_ids)
    c = counts(y, pid)
    if c.n_pos_images == 0 or c.n_neg_images == 0:
        return None, None, None, c
    auc = float(weighted_auc(y, s, np.ones((1, len(y))))[0])
    if n_boot <= 0:
        return auc, None, None, c
    lo, hi = _interval(weighted_auc(y, s, patient_weights(y, pid, n_boot, seed)), alpha)
    return auc, lo, hi, c


def paired_patient_bootstrap_diff(
    y: np.ndarray,
    score_a: np.ndarray,
    score_b: np.ndarray,
    patient_ids: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """AUC(a) - AUC(b) on the same images, with a CI from the same stratified patient resamples for both."""
    y, (a, b), pid = _known(y, [score_a, score_b], patient_ids)
    c = counts(y, pid)
    out: dict[str, Any] = {
        "auc_a": None,
        "auc_b": None,
        "diff": None,
        "lo": None,
        "hi": None,
        "n_boot": n_boot,
        **c.to_dict(),
    }
    if c.n_pos_images == 0 or c.n_neg_images == 0:
        return out
    ones = np.ones((1, len(y)))
    auc_a, auc_b = float(weighted_auc(y, a, ones)[0]), float(weighted_auc(y, b, ones)[0])
    out.update(auc_a=auc_a, auc_b=auc_b, diff=auc_a - auc_b)
    if n_boot > 0:
        w = patient_weights(y, pid, n_boot, seed)
        diffs = weighted_auc(y, a, w) - weighted_auc(y, b, w)
        out["lo"], out["hi"] = _interval(diffs, alpha)
    return out


def auc_entry(
    y: np.ndarray, score: np.ndarray, patient_ids: np.ndarray, n_boot: int, seed: int = 0
) -> dict[str, Any]:
    """One JSON-ready AUC row: the AUC, its stratified patient CI and the counts (with ``measurable``)."""
    auc, lo, hi, c = patient_stratified_bootstrap_auc(y, score, patient_ids, n_boot, seed)
    return {"auc": auc, "lo": lo, "hi": hi, "n_boot": n_boot, **c.to_dict()}


def paired_mean_diff(
    labels: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    patient_ids: np.ndarray,
    columns: Sequence[int],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """Mean over ``columns`` of AUC(a) - AUC(b), with a CI from joint patient resamples.

    One set of patients serves every column (the labels share images), so the strata of the single-label
    bootstrap cannot be kept; a column that loses a class in a resample is left out of that resample's
    mean (``columns`` should be the measurable ones, where this is rare: the count is reported).
    """
    pid = np.asarray(patient_ids)
    uniq, inverse = np.unique(pid, return_inverse=True)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(len(uniq), np.full(len(uniq), 1 / len(uniq)), size=n_boot)[:, inverse].astype(float)
    point, boots = [], []
    for k in columns:
        y, a, b = labels[:, k].astype(np.float64), scores_a[:, k], scores_b[:, k]
        keep = ~np.isnan(y) & np.isfinite(a) & np.isfinite(b)
        ones = np.ones((1, int(keep.sum())))
        point.append(weighted_auc(y[keep], a[keep], ones)[0] - weighted_auc(y[keep], b[keep], ones)[0])
        if n_boot > 0:
            boots.append(
                weighted_auc(y[keep], a[keep], w[:, keep]) - weighted_auc(y[keep], b[keep], w[:, keep])
            )
    out: dict[str, Any] = {
        "diff": float(np.mean(point)) if point else None,
        "lo": None,
        "hi": None,
        "n_columns": len(point),
    }
    if boots:
        stacked = np.stack(boots, axis=1)  # (n_boot, K)
        out["resamples_missing_a_class"] = int(np.isnan(stacked).any(axis=1).sum())
        out["lo"], out["hi"] = _interval(np.nanmean(stacked, axis=1), alpha)
    return out
