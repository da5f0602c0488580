"""Negation sensitivity of a text encoder, measured on the frozen pair set (:mod:`radclip.eval.negation_pairs`).

For each pair (condition c, affirmed a_i, negated n_i), with unit embeddings e(.):

* ``pair_cosine``: mean cos(a_i, n_i). A negation-blind encoder puts "X" and "no X" close (MiniLM ~0.8-0.9);
  it should fall.
* ``paraphrase_cosine``: mean cos(a_i, a_j) over the other affirmed sentences j of the same condition.
* ``gap``: paraphrase_cosine - pair_cosine. Positive when two ways of saying "X is present" are closer to each
  other than "X" is to "no X"; the number the text adapter is meant to raise.
* ``probe_accuracy``: a label-aware probe, fitted leave-one-out: for pair i, the direction
  d_c = mean e(affirmed) - mean e(negated) over the *other* pairs of c; the pair is ranked correctly when
  (e(a_i) - e(n_i)) . d_c > 0. Fraction of pairs ranked correctly (chance 0.5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Encode = Callable[[list[str]], np.ndarray]  # texts -> (N, D) embeddings (normalised here)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def negation_metrics(affirmed: np.ndarray, negated: np.ndarray, conditions: Sequence[str]) -> dict[str, Any]:
    """The metrics above from (P, D) affirmed and negated embeddings, one row per pair, and each pair's condition."""
    a, n = _unit(affirmed), _unit(negated)
    cond = np.asarray(conditions)
    if a.shape != n.shape or len(cond) != len(a):
        raise ValueError(
            f"affirmed {a.shape}, negated {n.shape} and {len(cond)} conditions must describe the same pairs"
        )
    pair_cos = (a * n).sum(1)
    para, correct = [], []
    for i in range(len(a)):
        others = np.flatnonzero((cond == cond[i]) & (np.arange(len(a)) != i))
        if len(others) == 0:
            raise ValueError(
                f"condition {cond[i]!r} has one pair; the leave-one-out probe needs >= 2 per condition"
            )
        para.append(float((a[others] @ a[i]).mean()))
        d = a[others].mean(0) - n[others].mean(0)
        correct.append(float((a[i] - n[i]) @ d) > 0)
    per: dict[str, dict[str, float]] = {}
    for c in dict.fromkeys(cond.tolist()):
        m = cond == c
        per[c] = {
            "pair_cosine": round(float(pair_cos[m].mean()), 4),
            "probe_accuracy": round(float(np.mean(np.asarray(correct)[m])), 4),
        }
    return {
        "n_pairs": len(a),
        "pair_cosine": round(float(pair_cos.mean()), 4),
        "paraphrase_cosine": round(float(np.mean(para)), 4),
        "gap": round(float(np.mean(para) - pair_cos.mean()), 4),
        "probe_accuracy": round(float(np.mean(correct)), 4),
        "per_condition": per,
    }


def evaluate_negation(encode: Encode, pairs: Sequence[tuple[str, str, str]] | None = None) -> dict[str, Any]:
    """Embed the pair set (default: the frozen one) with ``encode`` and compute :func:`negation_metrics`."""
    from radclip.eval.negation_pairs import NEGATION_PAIRS, NEGATION_PAIRS_NAME, pair_set_digest

    pairs = NEGATION_PAIRS if pairs is None else pairs
    aff = encode([p[1] for p in pairs])
    neg = encode([p[2] for p in pairs])
    out = negation_metrics(np.asarray(aff), np.asarray(neg), [p[0] for p in pairs])
    if pairs is NEGATION_PAIRS:
        out = {"pair_set": NEGATION_PAIRS_NAME, "pair_set_sha256": pair_set_digest(), **out}
    return out
