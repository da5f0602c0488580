"""Classification metrics: ROC AUC with bootstrap CIs (by patient), ECE, Brier, mean AUC.

All functions take plain numpy arrays. Labels may hold NaN (unknown) or -1 (uncertain): such
entries are dropped per label before any metric is computed.

A label is *measurable* when its evaluated rows hold at least ``MIN_POS`` positives and
``MIN_NEG`` negatives; the mean AUC averages measurable labels only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

MIN_POS = 3  # fewest positives for a label's AUC to be reported as measurable
MIN_NEG = 3  # fewest negatives, likewise


@dataclass
class AucResult:
    """One label's AUC with its bootstrap confidence interval."""

    auc: float | None  # None when the label has no positives or no negatives
    ci_low: float | None  # 2.5th percentile of the bootstrap AUCs
    ci_high: float | None  # 97.5th percentile
    n_pos: int  # positives among the rows with a known label
    n_neg: int  # negatives, likewise
    measurable: bool  # n_pos >= MIN_POS and n_neg >= MIN_NEG

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Rank-based ROC AUC (Mann-Whitney U with midranks for ties); NaN when one class is absent."""
    from scipy.stats import rankdata

    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int((y == 1).sum())
    n_neg = int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _known(y_true: np.ndarray, scores: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    y = np.asarray(y_true, dtype=np.float64)
    keep = (y == 0) | (y == 1)
    g = None if groups is None else np.asarray(groups)[keep]
    return y[keep], np.asarray(scores, dtype=np.float64)[keep], g


def _group_members(groups: np.ndarray | None) -> list[np.ndarray] | None:
    if groups is None:
        return None
    _, inverse = np.unique(groups.astype(str), return_inverse=True)
    return [np.flatnonzero(inverse == i) for i in range(int(inverse.max()) + 1)]


def _bootstrap_indices(n: int, members: list[np.ndarray] | None, rng: np.random.Generator) -> np.ndarray:
    """Row indices of one bootstrap resample: whole patients when ``members`` is given, else rows."""
    if members is None:
        return rng.integers(0, n, size=n)
    chosen = rng.integers(0, len(members), size=len(members))
    return np.concatenate([members[i] for i in chosen])


def auc_with_ci(
    y_true: np.ndarray,
    scores: np.ndarray,
    groups: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> AucResult:
    """AUC and a percentile bootstrap ``1 - alpha`` CI; resampling whole groups (patients) when given.

    Resamples that lose all positives or all negatives are redrawn as skipped (not counted);
    the CI is ``None`` when fewer than half of the resamples were usable.
    """
    y, s, g = _known(np.asarray(y_true), np.asarray(scores), None if groups is None else np.asarray(groups))
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    measurable = n_pos >= MIN_POS and n_neg >= MIN_NEG
    if n_pos == 0 or n_neg == 0:
        return AucResult(None, None, None, n_pos, n_neg, False)
    auc = roc_auc(y, s)
    rng = np.random.default_rng(seed)
    members = _group_members(g)
    boots = []
    for _ in range(n_boot):
        idx = _bootstrap_indices(len(y), members, rng)
        value = roc_auc(y[idx], s[idx])
        if not np.isnan(value):
            boots.append(value)
    if len(boots) < n_boot / 2:
        return AucResult(auc, None, None, n_pos, n_neg, measurable)
    lo, hi = np.percentile(boots, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return AucResult(auc, float(lo), float(hi), n_pos, n_neg, measurable)


def per_label_auc(
    labels: np.ndarray,
    scores: np.ndarray,
    names: Sequence[str],
    groups: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, AucResult]:
    """:func:`auc_with_ci` for every column of ``labels`` (N, K) against ``scores`` (N, K)."""
    return {name: auc_with_ci(labels[:, k], scores[:, k], groups, n_boot=n_boot, seed=seed + k) for k, name in enumerate(names)}


def mean_auc(results: dict[str, AucResult]) -> float | None:
    """Mean AUC over measurable labels (>= MIN_POS positives and >= MIN_NEG negatives); None if none are."""
    values = [r.auc for r in results.values() if r.measurable and r.auc is not None]
    return float(np.mean(values)) if values else None


def quick_mean_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Mean AUC over measurable columns without bootstrap (for validation during training)."""
    values = []
    for k in range(labels.shape[1]):
        y, s, _ = _known(labels[:, k], scores[:, k], None)
        if (y == 1).sum() >= MIN_POS and (y == 0).sum() >= MIN_NEG:
            values.append(roc_auc(y, s))
    return float(np.mean(values)) if values else None


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> float:
    """ECE with ``n_bins`` equal-width probability bins, pooled over all known (label, image) pairs.

    ``sum_b |B_b| / N * |mean(y in B_b) - mean(p in B_b)|``; NaN/-1 labels are ignored.
    """
    y, p = _flat_known(y_true, probs)
    if y.size == 0:
        return float("nan")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.sum() / y.size * abs(y[in_bin].mean() - p[in_bin].mean())
    return float(ece)


def brier_score(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean squared error between probabilities and known 0/1 labels (pooled)."""
    y, p = _flat_known(y_true, probs)
    return float(np.mean((p - y) ** 2)) if y.size else float("nan")


def reliability_bins(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> list[dict[str, float]]:
    """Per-bin counts, mean confidence and observed frequency (for reliability diagrams)."""
    y, p = _flat_known(y_true, probs)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    out = []
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            out.append({"lo": b / n_bins, "hi": (b + 1) / n_bins, "count": int(in_bin.sum()), "confidence": float(p[in_bin].mean()), "frequency": float(y[in_bin].mean())})
    return out


def _flat_known(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels and probabilities differ in size: {np.shape(y_true)} vs {np.shape(probs)}")
    keep = (y == 0) | (y == 1)
    return y[keep], p[keep]
