"""Data drift of incoming image embeddings against the reference population saved with the model.

Two statistics, each per window of ``window`` consecutive studies:

* the spec's **rolling-mean cosine distance**: ``1 - cos(mean(window), mean(reference))``, alerting
  above 0.10 (``RadclipEmbeddingDrift``). Cheap and interpretable, but blind to a change that keeps
  the mean (e.g. a wider spread);
* **MMD** with an RBF kernel (median-heuristic bandwidth on the reference) and a permutation p-value:
  a two-sample test that sees any change of distribution, with a false-alarm rate set by the
  p-value threshold rather than by a hand-tuned distance.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

COSINE_ALERT = 0.10  # the spec's threshold on the rolling-mean cosine distance


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def mean_cosine_distance(window: np.ndarray, reference_mean: np.ndarray) -> float:
    """``1 - cos`` between the window's mean embedding and the reference mean (embeddings L2-normalised first)."""
    m = _unit(_unit(window).mean(axis=0))
    return float(1.0 - m @ _unit(reference_mean))


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def median_bandwidth(reference: np.ndarray, max_rows: int = 500, seed: int = 0) -> float:
    """The median pairwise squared distance of (a sample of) the reference: the RBF kernel's scale."""
    ref = _unit(reference)
    if len(ref) > max_rows:
        ref = ref[np.random.default_rng(seed).choice(len(ref), max_rows, replace=False)]
    d = _sq_dists(ref, ref)
    return float(np.median(d[np.triu_indices(len(ref), 1)])) or 1.0


def mmd_permutation_test(
    x: np.ndarray, y: np.ndarray, bandwidth: float, n_perm: int = 200, seed: int = 0
) -> tuple[float, float]:
    """(biased MMD², permutation p-value) of samples ``x`` vs ``y`` under an RBF kernel ``exp(-d²/bandwidth)``."""
    z = _unit(np.concatenate([x, y]))
    k = np.exp(-_sq_dists(z, z) / bandwidth)
    n = len(x)

    def stat(idx: np.ndarray) -> float:
        a, b = idx[:n], idx[n:]
        return float(k[np.ix_(a, a)].mean() + k[np.ix_(b, b)].mean() - 2 * k[np.ix_(a, b)].mean())

    rng = np.random.default_rng(seed)
    observed = stat(np.arange(len(z)))
    exceed = sum(stat(rng.permutation(len(z))) >= observed for _ in range(n_perm))
    return observed, (exceed + 1) / (n_perm + 1)


@dataclass(frozen=True)
class WindowReport:
    n: int
    cosine_distance: float
    drifted: bool  # cosine_distance > COSINE_ALERT


class RollingDrift:
    """Keep the last ``window`` embeddings; report the rolling-mean cosine distance once the window is full."""

    def __init__(self, reference: np.ndarray, window: int = 100) -> None:
        if window < 2:
            raise ValueError(f"drift window must hold at least 2 studies, not {window}")
        self.reference_mean = _unit(reference).mean(axis=0)
        self.window = window
        self._recent: deque[np.ndarray] = deque(maxlen=window)

    def __len__(self) -> int:
        return len(self._recent)

    def update(self, embedding: np.ndarray) -> WindowReport | None:
        self._recent.append(np.asarray(embedding, dtype=np.float64).ravel())
        if len(self._recent) < self.window:
            return None
        d = mean_cosine_distance(np.stack(self._recent), self.reference_mean)
        return WindowReport(len(self._recent), d, d > COSINE_ALERT)
