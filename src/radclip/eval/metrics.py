"""Classification metrics: ROC AUC with stratified patient-bootstrap CIs, paired AUC differences, ECE, Brier.

All functions take plain numpy arrays. Labels may hold NaN (unknown) or -1 (uncertain): such
entries are dropped per label before any metric is computed.

Methods (also in ``docs/evaluation.md``, "Methods"):

* A label is *measurable* when its evaluated rows come from at least ``MIN_POS`` positive
  patients and ``MIN_NEG`` negative patients (a patient is positive when any of their rows is
  positive, negative when any row is negative). Images are counted too, and reported.
* The bootstrap resamples whole patients **stratified** by positive / negative patient: each
  resample draws as many positive patients (with replacement) as there are, and as many of
  the others. Every resample therefore holds both classes, none is discarded, and the CI is
  not conditional on a lucky draw.
* The CI is the percentile interval ``[alpha/2, 1 - alpha/2]`` (95% by default).
* A paired comparison of two scorers resamples the same patients for both (one resample,
  two AUCs), so the CI of the difference reflects the correlation between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

MIN_POS = 3  # fewest positive patients for a label's AUC to be reported as measurable (= patient_bootstrap.MIN_PATIENTS)
MIN_NEG = 3  # fewest negative patients, likewise


@dataclass
class AucResult:
    """One label's AUC with its bootstrap confidence interval and the counts behind it."""

    auc: float | None  # None when the label has no positives or no negatives
    ci_low: float | None  # alpha/2 percentile of the bootstrap AUCs (None without bootstrap)
    ci_high: float | None  # 1 - alpha/2 percentile
    n_pos: int  # positive images among the rows with a known label
    n_neg: int  # negative images, likewise
    measurable: bool  # n_pos_patients >= MIN_POS and n_neg_patients >= MIN_NEG
    n_pos_patients: int = 0  # patients with at least one positive row
    n_neg_patients: int = 0  # patients with at least one negative row

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


def patient_counts(y: np.ndarray, groups: np.ndarray | None) -> tuple[int, int]:
    """(positive patients, negative patients) among known rows; each row is its own patient without groups."""
    from radclip.eval.patient_bootstrap import counts

    y = np.asarray(y, dtype=np.float64)
    c = counts(y, np.arange(len(y)).astype(str) if groups is None else np.asarray(groups).astype(str))
    return c.n_pos_patients, c.n_neg_patients


def is_measurable(n_pos_patients: int, n_neg_patients: int) -> bool:
    """The measurability rule (see the module doc)."""
    return n_pos_patients >= MIN_POS and n_neg_patients >= MIN_NEG


def _patients(n: int, groups: np.ndarray | None) -> np.ndarray:
    return np.arange(n).astype(str) if groups is None else np.asarray(groups).astype(str)


def auc_with_ci(
    y_true: np.ndarray,
    scores: np.ndarray,
    groups: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> AucResult:
    """AUC and a percentile bootstrap ``1 - alpha`` CI from stratified patient resamples (see the module doc).

    The resampling itself lives in :mod:`radclip.eval.patient_bootstrap` (vectorised weighted AUCs).
    """
    from radclip.eval.patient_bootstrap import patient_stratified_bootstrap_auc

    y, s, g = _known(np.asarray(y_true), np.asarray(scores), None if groups is None else np.asarray(groups))
    auc, lo, hi, c = patient_stratified_bootstrap_auc(y, s, _patients(len(y), g), n_boot=n_boot, seed=seed, alpha=alpha)
    return AucResult(auc, lo, hi, c.n_pos_images, c.n_neg_images, is_measurable(c.n_pos_patients, c.n_neg_patients), c.n_pos_patients, c.n_neg_patients)


def paired_auc_difference(
    y_true: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    groups: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """AUC(a) - AUC(b) on the same rows with a paired stratified patient-bootstrap CI.

    Returns ``{"auc_a", "auc_b", "diff", "ci_low", "ci_high", "excludes_zero", "n_pos", "n_neg" (images),
    "n_pos_patients", "n_neg_patients", "measurable", "n_boot"}``; ``diff`` is None when a class is absent.
    """
    from radclip.eval.patient_bootstrap import paired_patient_bootstrap_diff

    y = np.asarray(y_true, dtype=np.float64)
    y = np.where((y == 0) | (y == 1), y, np.nan)  # -1 (uncertain) is unknown here too
    out = paired_patient_bootstrap_diff(y, np.asarray(scores_a), np.asarray(scores_b), _patients(len(y), None if groups is None else np.asarray(groups)),
                                        n_boot=n_boot, seed=seed, alpha=alpha)
    out["ci_low"], out["ci_high"] = out.pop("lo"), out.pop("hi")
    out["n_pos"], out["n_neg"] = out.pop("n_pos_images"), out.pop("n_neg_images")  # the names AucResult uses
    out["excludes_zero"] = bool(out["ci_low"] is not None and (out["ci_low"] > 0 or out["ci_high"] < 0))
    return out


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
    """Mean AUC over columns with >= MIN_POS / MIN_NEG images, without bootstrap (validation during training)."""
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


def per_label_ece(y_true: np.ndarray, probs: np.ndarray, names: Sequence[str], n_bins: int = 10) -> dict[str, Any]:
    """ECE of every label on its own known rows, and their mean (labels with both classes only).

    Pooled ECE over all (image, label) pairs is dominated by easy negatives: a predictor that
    ignores the image and outputs each label's prevalence scores well on it. Per-label ECE,
    shown next to :func:`prevalence_ece`, says whether the probabilities carry information.
    """
    out: dict[str, Any] = {}
    for k, name in enumerate(names):
        y = np.asarray(y_true, dtype=np.float64)[:, k]
        keep = (y == 0) | (y == 1)
        if not ((y[keep] == 1).any() and (y[keep] == 0).any()):
            continue
        out[name] = {"ece": expected_calibration_error(y[keep], np.asarray(probs)[keep, k], n_bins), "n": int(keep.sum()), "n_pos": int((y[keep] == 1).sum())}
    return {"per_label": out, "mean": float(np.mean([v["ece"] for v in out.values()])) if out else None, "n_bins": n_bins}


def prevalence_ece(y_true: np.ndarray, prevalence: np.ndarray, names: Sequence[str], n_bins: int = 10) -> dict[str, Any]:
    """:func:`per_label_ece` of the image-blind predictor that outputs each label's (train) prevalence."""
    y = np.asarray(y_true, dtype=np.float64)
    const = np.broadcast_to(np.asarray(prevalence, dtype=np.float64)[None, :], y.shape)
    return per_label_ece(y, const, names, n_bins)
