"""Confidence bands for calibrated probabilities.

Definition (see docs/triage.md): after temperature scaling, a probability ``p`` claims "about
``p`` of images like this are positive". On the validation split we count how many (image, label)
pairs had a calibrated probability in each of ``n_bins`` equal-width bins, pooled over labels.
The band of ``p`` is the 95% Wilson score interval of a proportion ``p`` observed on ``n`` cases,
where ``n`` is that count for ``p``'s bin: probabilities in ranges the model rarely produced on
validation get wide bands, well-supported ones narrow bands. It is a statement about support,
not a per-image posterior.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054


def wilson_interval(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of proportion ``p`` on ``n`` trials; (0, 1) when ``n`` is 0."""
    if n <= 0:
        return 0.0, 1.0
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bin_counts(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> list[int]:
    """Known (image, label) pairs per equal-width probability bin (pooled over labels)."""
    known = (labels == 0) | (labels == 1)
    p = np.asarray(probs)[known]
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    return [int((bins == b).sum()) for b in range(n_bins)]


def confidence_band(p: float, counts: Sequence[int] | None) -> tuple[float, float]:
    """The band of calibrated probability ``p`` given validation ``counts`` per bin (None: 0..1)."""
    if not counts:
        return 0.0, 1.0
    b = min(int(p * len(counts)), len(counts) - 1)
    return wilson_interval(p, int(counts[b]))
