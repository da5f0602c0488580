"""Per-label calibration of triage logits (fitted on validation) and reliability diagrams.

Calibrated probability of label ``k``: ``sigmoid(logit_k / T_k + b_k)``.

* **Temperature only** (``b_k = 0``; cards before triage 0.2.0's recalibration): ``T_k``
  minimises the validation NLL of label ``k``.
* **Platt with a prior shift** (:func:`fit_platt_per_label`): a model trained with BCE
  ``pos_weight`` ``w_k`` learns logits shifted up by about ``log(w_k)`` (the weighted optimum is
  the odds times ``w_k``), which no temperature can remove. The shift is subtracted first, then a
  slope and an intercept are fitted on validation. Selected for triage 0.2.0 by patient-grouped
  5-fold cross-validation on val (per-label ECE 0.025 against 0.165 for temperature only;
  docs/triage.md).

Either way, a label whose validation rows hold fewer than ``MIN_FIT_PATIENTS`` positive (or
negative) *patients* gets the pooled fit over all labels together: a fit to one or two positives
is noise (issue 20, finding 5), and the pooled fit is the natural shrinkage target. With the
prior shift the pooled fit still keeps each label's own shift.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from radclip.eval.metrics import reliability_bins

if TYPE_CHECKING:
    from radclip.models.card import ModelCard

T_BOUNDS = (0.05, 20.0)  # search range for temperatures
B_BOUNDS = (-20.0, 20.0)  # search range for Platt intercepts
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


def _platt_nll(z: np.ndarray, y: np.ndarray, inv_t: float, b: float) -> float:
    u = z * inv_t + b
    return float(np.mean(np.maximum(u, 0) - u * y + np.log1p(np.exp(-np.abs(u)))))


def fit_platt(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(T, b)`` minimising the BCE of ``sigmoid(logits / T + b)`` against 0/1 labels ``y``."""
    from scipy.optimize import minimize

    z, yy = np.asarray(logits, dtype=np.float64), np.asarray(y, dtype=np.float64)
    bounds = [(1 / T_BOUNDS[1], 1 / T_BOUNDS[0]), B_BOUNDS]
    res = minimize(lambda p: _platt_nll(z, yy, p[0], p[1]), x0=[1.0, 0.0], method="L-BFGS-B", bounds=bounds)
    return float(1.0 / res.x[0]), float(res.x[1])


def prior_shift(pos_weight: np.ndarray | None, n_labels: int) -> np.ndarray:
    """``log(pos_weight)`` per label: how far a ``pos_weight`` BCE moves the optimal logit (0 without one)."""
    if pos_weight is None:
        return np.zeros(n_labels)
    return np.log(np.asarray(pos_weight, dtype=np.float64))


def fit_platt_per_label(logits: np.ndarray, labels: np.ndarray, patients: np.ndarray | None = None, shift: np.ndarray | None = None,
                        min_patients: int = MIN_FIT_PATIENTS) -> LabelCalibration:
    """Per-label ``(T_k, b_k)`` on ``logits - shift`` (see the module docstring), expressed on the raw logits."""
    from radclip.eval.metrics import patient_counts

    k_labels = labels.shape[1]
    s = np.zeros(k_labels) if shift is None else np.asarray(shift, dtype=np.float64)
    z = np.asarray(logits, dtype=np.float64) - s[None, :]
    known = (labels == 0) | (labels == 1)
    pooled = fit_platt(z[known], labels[known]) if known.any() else (1.0, 0.0)
    temps = np.full(k_labels, pooled[0])
    biases = np.full(k_labels, pooled[1])
    for k in range(k_labels):
        y = labels[known[:, k], k]
        n_pos, n_neg = patient_counts(y, None if patients is None else np.asarray(patients)[known[:, k]])
        if n_pos >= min_patients and n_neg >= min_patients:
            temps[k], biases[k] = fit_platt(z[known[:, k], k], y)
    # (z - s) / T + b  ==  z / T + (b - s / T): stored against the raw logits the model emits
    return LabelCalibration(temperature=temps, bias=biases - s / temps)


@dataclass(frozen=True)
class LabelCalibration:
    """``sigmoid(logit / temperature + bias)`` per label (``bias`` 0 for temperature-only cards)."""

    temperature: np.ndarray  # (K,)
    bias: np.ndarray  # (K,)

    def probs(self, logits: np.ndarray) -> np.ndarray:
        z = np.asarray(logits, dtype=np.float64) / self.temperature[None, :] + self.bias[None, :]
        return 1.0 / (1.0 + np.exp(-z))

    def to_card(self, labels: list[str] | tuple[str, ...]) -> dict[str, dict[str, float]]:
        """The card's ``temperature`` and ``bias`` blocks, keyed by label."""
        return {"temperature": {lab: float(t) for lab, t in zip(labels, self.temperature, strict=True)},
                "bias": {lab: float(b) for lab, b in zip(labels, self.bias, strict=True)}}


CALIBRATION_METHOD = ("per-label Platt (temperature and intercept) on logits minus log(pos_weight), fitted on {where}; "
                      "labels with < {n} positive or negative patients there use the pooled fit (keeping their own shift)")


def calibration_block(calibration: LabelCalibration, shift: np.ndarray, labels: list[str], val_logits: np.ndarray, val_labels: np.ndarray,
                      where: str) -> dict[str, Any]:
    """The card's ``calibration`` block: method, per-label T and b, the prior shift, and the val bin counts of the band."""
    from radclip.models.confidence import bin_counts

    return {"method": CALIBRATION_METHOD.format(where=where, n=MIN_FIT_PATIENTS), **calibration.to_card(labels),
            "prior_shift": {lab: float(v) for lab, v in zip(labels, shift, strict=True)},
            "val_bin_counts": bin_counts(calibration.probs(val_logits), val_labels),
            "band": "95% Wilson interval of p on the validation count of p's bin (docs/triage.md)"}


def temperatures_from_card(card: ModelCard) -> np.ndarray | None:
    """The card's per-label temperatures in its label order, or None when it has none."""
    temps = (card.calibration or {}).get("temperature")
    if not temps:
        return None
    missing = [lab for lab in card.labels if lab not in temps]
    if missing:
        raise ValueError(f"card {card.name!r} calibration lacks temperatures for {missing}; re-run calibration")
    return np.array([float(temps[lab]) for lab in card.labels])


def calibration_from_card(card: ModelCard) -> LabelCalibration | None:
    """The card's per-label calibration (temperatures, plus intercepts when it has them), or None without one."""
    temps = temperatures_from_card(card)
    if temps is None:
        return None
    biases = (card.calibration or {}).get("bias") or {}
    missing = [lab for lab in card.labels if biases and lab not in biases]
    if missing:
        raise ValueError(f"card {card.name!r} calibration lacks intercepts for {missing}; re-run calibration")
    return LabelCalibration(temperature=temps, bias=np.array([float(biases.get(lab, 0.0)) for lab in card.labels]))


def calibrated_probs(logits: np.ndarray, calibration: LabelCalibration | np.ndarray | None) -> np.ndarray:
    """Calibrated probabilities: a :class:`LabelCalibration`, per-label temperatures (K,), or None (plain sigmoid)."""
    if isinstance(calibration, LabelCalibration):
        return calibration.probs(logits)
    z = logits if calibration is None else logits / np.asarray(calibration)[None, :]
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


def cross_validated_ece(logits: np.ndarray, labels: np.ndarray, patients: np.ndarray, fit: Any, names: list[str], folds: int = 5,
                        seed: int = 0) -> dict[str, float]:
    """Out-of-fold ECE of a calibration recipe on one split: patient-grouped ``folds``-fold, each fold fitted on the rest.

    ``fit(logits, labels, patients) -> LabelCalibration``. Returns the mean per-label and the pooled ECE of the
    out-of-fold probabilities: how to choose between recipes on validation without touching test.
    """
    from radclip.eval.metrics import expected_calibration_error, per_label_ece

    patients = np.asarray(patients)
    order = np.array(sorted(set(patients.tolist())))
    np.random.default_rng(seed).shuffle(order)
    probs = np.zeros_like(np.asarray(logits, dtype=np.float64))
    for part in np.array_split(order, folds):
        held = np.isin(patients, part)
        cal = fit(logits[~held], labels[~held], patients[~held])
        probs[held] = cal.probs(logits[held])
    return {"ece_per_label_mean": float(per_label_ece(labels, probs, names)["mean"]), "ece_pooled": float(expected_calibration_error(labels, probs))}
