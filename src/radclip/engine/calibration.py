"""Per-condition calibration: a logistic map from image-text cosine to a confidence in [0, 1].

``p = sigmoid(scale * cosine + bias)``, fitted per condition on a labelled validation
split by :func:`fit_calibration` (Newton's method on the log-loss with a small L2 penalty;
NaN labels mean unknown and are skipped). A condition with too few positives or negatives
stays uncalibrated and uses :data:`DEFAULT_CALIBRATION`: ``sigmoid(10 * (cosine - 0.2))``,
a fixed monotone map chosen so that a cosine of 0.2 (typical of a matching image-text pair
for CLIP-style models) gives 0.5. It is deliberately independent of the other registered
conditions, so registering one condition never changes another's confidence; results built
with it are marked ``calibrated: false``.

Fitted calibrations are stored in the ``calibrations`` table keyed by condition *version*
and both model versions, so a changed prompt list or model falls back to uncalibrated
instead of silently reusing a stale fit. Fits shipped with a model (``<model>.calibration.json``
beside its weights, made by ``radclip conditions calibrate --ship``) are read by
:func:`load_shipped_calibrations` and apply while a condition's prompt ensemble is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, select

from radclip.engine import db


@dataclass(frozen=True)
class LogisticCalibration:
    scale: float  # slope on the cosine
    bias: float  # intercept
    n_pos: int = 0  # positives it was fitted on (0 for the default)
    n_neg: int = 0

    def __call__(self, cosine: np.ndarray | float) -> np.ndarray:
        z = self.scale * np.asarray(cosine, dtype=np.float64) + self.bias
        return (1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))).astype(np.float32)


DEFAULT_SCALE, DEFAULT_CENTER = 10.0, 0.2
DEFAULT_CALIBRATION = LogisticCalibration(DEFAULT_SCALE, -DEFAULT_SCALE * DEFAULT_CENTER)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-4, iters: int = 100) -> tuple[float, float]:
    """Fit ``sigmoid(a x + b)`` to binary ``y`` by Newton's method; returns ``(a, b)``."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    mu, sd = x.mean(), x.std() + 1e-12  # standardise for conditioning, undo at the end
    xs = (x - mu) / sd
    w = np.zeros(2)
    feats = np.stack([xs, np.ones_like(xs)], axis=1)
    reg = np.diag([l2 * len(x), 0.0])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(feats @ w, -60, 60)))
        grad = feats.T @ (p - y) + reg @ w
        hess = feats.T @ (feats * (p * (1 - p))[:, None]) + reg + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    a = w[0] / sd
    return float(a), float(w[1] - a * mu)


MIN_PATIENTS = 5  # positive and negative *patients* a fit needs (images of one patient are not independent)


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def fit_calibration(
    image_embs: np.ndarray,
    label_matrix: np.ndarray,
    names: Sequence[str],
    condition_embs: np.ndarray,
    min_pos: int = 5,
    min_neg: int = 5,
    patients: Sequence[str] | None = None,
    min_patients: int = MIN_PATIENTS,
) -> dict[str, LogisticCalibration]:
    """Fit one logistic per column of ``label_matrix`` (N, K; 1/0/NaN) against ``condition_embs`` (K, dim).

    Conditions with fewer than ``min_pos`` positive or ``min_neg`` negative images, or (when
    ``patients`` gives each row's patient id) fewer than ``min_patients`` positive or negative
    patients, are left out and stay uncalibrated. A fit whose slope comes out negative (the
    prompts rank that finding backwards on this split, i.e. noise) is replaced by the
    intercept-only fit: the split's prevalence, which is calibrated but says nothing about the image.
    """
    labels = np.asarray(label_matrix, dtype=np.float64)
    if labels.shape != (len(image_embs), len(names)) or len(condition_embs) != len(names):
        raise ValueError(
            f"label_matrix must be (n_images={len(image_embs)}, n_names={len(names)}) and condition_embs "
            f"({len(names)}, dim); got {labels.shape} and {np.shape(condition_embs)}"
        )
    if patients is not None and len(patients) != len(image_embs):
        raise ValueError(f"patients must give one id per image ({len(image_embs)}); got {len(patients)}")
    pids = np.asarray(patients if patients is not None else np.arange(len(image_embs)), dtype=str)
    cos = np.asarray(image_embs, np.float32) @ np.asarray(condition_embs, np.float32).T
    out: dict[str, LogisticCalibration] = {}
    for j, name in enumerate(names):
        known = ~np.isnan(labels[:, j])
        y = labels[known, j] > 0.5
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        if n_pos < min_pos or n_neg < min_neg:
            continue
        if patients is not None and min(len(set(pids[known][y])), len(set(pids[known][~y]))) < min_patients:
            continue
        a, b = fit_logistic(cos[known, j], y.astype(np.float64))
        if a <= 0:
            a, b = 0.0, _logit(n_pos / (n_pos + n_neg))
        out[name] = LogisticCalibration(a, b, n_pos, n_neg)
    return out


def save_calibrations(engine, version_ids: dict[str, int], cals: dict[str, LogisticCalibration],
                      text_version: str, image_version: str) -> int:  # fmt: skip
    """Store fits keyed by condition-version row id; replaces earlier fits for the same key."""
    sessions = db.session_factory(engine)
    with sessions.begin() as s:
        for name, cal in cals.items():
            vid = version_ids[name]
            s.execute(delete(db.Calibration).where(
                db.Calibration.condition_version_id == vid, db.Calibration.text_version == text_version,
                db.Calibration.image_version == image_version))  # fmt: skip
            s.add(db.Calibration(condition_version_id=vid, text_version=text_version, image_version=image_version,
                                 scale=cal.scale, bias=cal.bias, n_pos=cal.n_pos, n_neg=cal.n_neg,
                                 fitted_at=db.utcnow()))  # fmt: skip
    return len(cals)


def load_calibrations(engine, version_ids: dict[str, int], text_version: str, image_version: str) -> dict[str, LogisticCalibration]:
    """Fits for exactly these condition versions and model versions (stale fits are not returned)."""
    by_vid = {v: k for k, v in version_ids.items()}
    if not by_vid:
        return {}
    sessions = db.session_factory(engine)
    with sessions() as s:
        rows = s.scalars(select(db.Calibration).where(
            db.Calibration.condition_version_id.in_(list(by_vid)), db.Calibration.text_version == text_version,
            db.Calibration.image_version == image_version)).all()  # fmt: skip
    return {by_vid[r.condition_version_id]: LogisticCalibration(r.scale, r.bias, r.n_pos, r.n_neg) for r in rows}


# -- shipped fits: a file beside the image-text model's weights ------------------------------
CALIBRATION_SUFFIX = ".calibration.json"
SAME_CONDITION_COSINE = 0.999  # a registered condition matches a shipped fit when its prompt ensemble is this close


@dataclass(frozen=True)
class ShippedCalibrations:
    """Per-condition fits shipped with a model, each tied to the prompt ensemble it was fitted for.

    A fit applies to a registered condition only when the name matches and the condition's current
    ensemble embedding is the one the fit was made with (cosine >= 0.999): editing a condition's
    prompts makes its shipped fit stale, as it does for fits stored in the database.
    """

    fits: dict[str, LogisticCalibration]
    embeddings: dict[str, np.ndarray]  # name -> (D,) ensemble embedding at fit time
    meta: dict[str, Any]  # model_sha256, text/image versions, data_snapshot, split, rule, per-fit counts

    def matching(self, names: Sequence[str], matrix: np.ndarray) -> dict[str, LogisticCalibration]:
        out = {}
        for name, row in zip(names, np.asarray(matrix, np.float64), strict=True):
            ref = self.embeddings.get(name)
            if ref is not None and float(row @ ref) / max(float(np.linalg.norm(row) * np.linalg.norm(ref)), 1e-12) >= SAME_CONDITION_COSINE:
                out[name] = self.fits[name]
        return out


def save_shipped_calibrations(path: Path, cals: dict[str, LogisticCalibration], embeddings: dict[str, np.ndarray],
                              meta: dict[str, Any], details: dict[str, dict[str, Any]] | None = None) -> Path:  # fmt: skip
    """Write the fits (with each condition's ensemble embedding and ``details``, e.g. patient counts) as JSON."""
    fits = {n: {"scale": c.scale, "bias": c.bias, "n_pos": c.n_pos, "n_neg": c.n_neg, **(details or {}).get(n, {}),
                "condition_embedding": [round(float(v), 6) for v in embeddings[n]]} for n, c in sorted(cals.items())}  # fmt: skip
    Path(path).write_text(json.dumps({**meta, "fits": fits}, indent=1) + "\n", encoding="utf-8")
    return Path(path)


def load_shipped_calibrations(path: Path, model_sha256: str) -> ShippedCalibrations:
    """Read a shipped calibration file; refuse one made for other weights or fitted on the test split."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no shipped calibrations at {path}; run `radclip conditions calibrate --ship` to make them")
    doc = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("model_sha256") != model_sha256:
        raise ValueError(f"{path.name} was fitted for weights sha256 {doc.get('model_sha256')!r}, but the loaded model is "
                         f"{model_sha256!r}; rerun `radclip conditions calibrate --ship` for these weights")  # fmt: skip
    if doc.get("split") == "test":
        raise ValueError(f"{path.name} was fitted on the test split; calibrations must be fitted on val")
    fits = {n: LogisticCalibration(float(f["scale"]), float(f["bias"]), int(f["n_pos"]), int(f["n_neg"])) for n, f in doc["fits"].items()}
    embs = {n: np.asarray(f["condition_embedding"], np.float64) for n, f in doc["fits"].items()}
    return ShippedCalibrations(fits, embs, {k: v for k, v in doc.items() if k != "fits"})


# -- label-free fallback: standardise against a reference image population -------------------
REFERENCE_Z_CENTER = 2.0  # a cosine 2 sd above the reference population's mean maps to confidence 0.5
REFERENCE_SLOPE = 1.5  # logistic slope per sd: the population mean (z = 0) maps to sigmoid(-3) = 0.047
MIN_REFERENCE_IMAGES = 50


@dataclass(frozen=True)
class ReferenceDistribution:
    """Mean and covariance of image embeddings of a reference population (the train split; see engine.reference).

    For a condition with text embedding ``t`` the cosine over that population has mean ``t·m`` and
    variance ``tᵀ Σ t``, so any condition, registered before or after, gets a z-score without
    labels. Unlabelled conditions then read "how unusual is this image for this finding, relative
    to the training images" instead of a raw cosine: CLIP cosines sit in a narrow band, so a fixed global
    mapping rates every condition alike.
    """

    mean: np.ndarray  # (D,)
    cov: np.ndarray  # (D, D)
    n: int

    @classmethod
    def from_embeddings(cls, embs: np.ndarray) -> ReferenceDistribution:
        x = np.asarray(embs, np.float64)
        if x.ndim != 2 or len(x) < MIN_REFERENCE_IMAGES:
            raise ValueError(f"a reference population needs at least {MIN_REFERENCE_IMAGES} embeddings (N, D); got {x.shape}")
        return cls(x.mean(axis=0), np.cov(x, rowvar=False), len(x))

    def mapping(self, condition_embs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-condition (scale, bias) of ``sigmoid(scale * cos + bias)`` = ``sigmoid(k (z - z0))``."""
        t = np.asarray(condition_embs, np.float64)
        mu = t @ self.mean
        sd = np.sqrt(np.maximum(np.einsum("kd,de,ke->k", t, self.cov, t), 1e-12))
        scale = REFERENCE_SLOPE / sd
        return scale.astype(np.float32), (-scale * mu - REFERENCE_SLOPE * REFERENCE_Z_CENTER).astype(np.float32)
