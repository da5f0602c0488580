"""Per-class temperature scaling (fitted on validation) and reliability diagrams.

Calibrated probability of label ``k``: ``sigmoid(logit_k / T_k)``. ``T_k`` minimises the
validation NLL of label ``k``. A label whose validation rows hold fewer than
``MIN_FIT_PATIENTS`` positive (or negative) *patients* gets the pooled temperature fitted over
all labels together (one T for the whole model): a temperature fitted to one or two positives
is noise (issue 20, finding 5), and the pooled T is the natural shrinkage target.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from radclip.eval.metrics import reliability_bins

if TYPE_CHECKING:
    from radclip.models.card import ModelCard

T_BOUNDS = (0.05, 20.0)  # search range for temperatures
MIN_FIT_PATIENTS = 5  # fewest positive (and negative) validation patients for a label's own temperature


def _nll(logits: np.ndarray, y: np.ndarray, t: float) -> float:
    z = logits / t
    # log(1 + exp(-|z|)) form: stable for large |z|
    return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T in ``T_BOUNDS`` minimising the BCE of ``sigmoid(logits / T)`` against 0/1 labels ``y``."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda log_t: _nll(logits, y, float(np.exp(log_t))), bounds=tuple(np.log(T_BOUNDS)), method="bounded")
    return float(np.exp(res.x))


def fit_temperatures(logits: np.ndarray, labels: np.ndarray, patients: np.ndarray | None = None, min_patients: int = MIN_FIT_PATIENTS) -> np.ndarray:
    """Per-class temperatures (K,) from validation logits (N, K) and labels (NaN/-1 = unknown).

    ``patients`` (N,) ids count positive/negative patients (each row is a patient without them).
    """
    from radclip.eval.metrics import patient_counts

    known = (labels == 0) | (labels == 1)
    pooled = fit_temperature(logits[known], labels[known]) if known.any() else 1.0
    temps = np.full(labels.shape[1], pooled, dtype=np.float64)
    for k in range(labels.shape[1]):
        y = labels[known[:, k], k]
        n_pos, n_neg = patient_counts(y, None if patients is None else np.asarray(patients)[known[:, k]])
        if n_pos >= min_patients and n_neg >= min_patients:
            temps[k] = fit_temperature(logits[known[:, k], k], y)
    return temps


def temperatures_from_card(card: ModelCard) -> np.ndarray | None:
    """The card's per-label temperatures in its label order, or None when it has none."""
    temps = (card.calibration or {}).get("temperature")
    if not temps:
        return None
    missing = [lab for lab in card.labels if lab not in temps]
    if missing:
        raise ValueError(f"card {card.name!r} calibration lacks temperatures for {missing}; re-run calibration")
    return np.array([float(temps[lab]) for lab in card.labels])


def calibrated_probs(logits: np.ndarray, temperatures: np.ndarray | None) -> np.ndarray:
    """``sigmoid(logits / T)`` per column (T = 1 when ``temperatures`` is None)."""
    z = logits if temperatures is None else logits / np.asarray(temperatures)[None, :]
    return 1.0 / (1.0 + np.exp(-z))


def reliability_diagram(labels: np.ndarray, curves: dict[str, np.ndarray], out: str | Path, n_bins: int = 10, title: str = "Reliability") -> Path:
    """Write a PNG: observed frequency vs mean confidence per bin for each named probability set."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from radclip.eval.metrics import expected_calibration_error

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect")
    for name, probs in curves.items():
        bins: list[dict[str, Any]] = reliability_bins(labels, probs, n_bins)
        ece = expected_calibration_error(labels, probs, n_bins)
        ax.plot([b["confidence"] for b in bins], [b["frequency"] for b in bins], marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
