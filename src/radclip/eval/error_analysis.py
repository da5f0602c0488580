"""Error analysis: top-k confusion between similar findings, failure-case selection, prompt sensitivity.

Definitions (also in ``docs/evaluation.md``):

* **Top-k set** of an image: the k findings (of all 14) with the highest model scores.
* **Top-3 confusion** ``C[A, B]`` over images positive for A: for ``B == A`` the fraction whose
  top-3 contains A (top-3 recall); for ``B != A`` the fraction whose top-3 contains B *among
  the A-positive images that are negative for B* (a true confusion, not a co-occurrence).
  ``hit[A, B]`` is the same without excluding B-positives (how often B shows up at all).
* **Score percentile** of image i for label k: the fraction of the split's k-negative images
  scoring below it (ties count half) -- the image's own contribution to the AUC. A positive
  is *caught* at percentile >= 0.8 and *missed* at <= 0.5.
* Gallery groups: zero-shot misses / supervised catches; the reverse; and confident false
  positives (negatives with the highest calibrated triage probability).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from radclip.eval.metrics import MIN_NEG, MIN_POS, roc_auc

SIMILAR_CONDITIONS = ("Effusion", "Atelectasis", "Consolidation", "Infiltration", "Pneumonia", "Edema")
CAUGHT = 0.8  # a positive whose score percentile is at least this is caught
MISSED = 0.5  # ... at most this is missed


def topk_confusion(labels: np.ndarray, scores: np.ndarray, names: Sequence[str], subset: Sequence[str] = SIMILAR_CONDITIONS, k: int = 3) -> dict[str, Any]:
    """``confusion`` and ``hit`` matrices (rows A, cols B over ``subset``) with counts; see the module doc."""
    idx = [list(names).index(n) for n in subset]
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    in_top = np.zeros_like(scores, dtype=bool)
    np.put_along_axis(in_top, top, True, axis=1)
    m = len(idx)
    conf = np.full((m, m), np.nan)
    hit = np.full((m, m), np.nan)
    denom = np.zeros((m, m), dtype=int)
    for a, ka in enumerate(idx):
        pos_a = labels[:, ka] == 1
        for b, kb in enumerate(idx):
            if pos_a.any():
                hit[a, b] = in_top[pos_a, kb].mean()
            rows = pos_a if a == b else pos_a & (labels[:, kb] == 0)
            denom[a, b] = int(rows.sum())
            if rows.any():
                conf[a, b] = in_top[rows, kb].mean()
    return {"labels": list(subset), "k": k, "n_pos": {n: int((labels[:, i] == 1).sum()) for n, i in zip(subset, idx, strict=True)},
            "confusion": _nan_to_none(conf), "hit": _nan_to_none(hit), "denominator": denom.tolist()}


def _nan_to_none(a: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else float(v) for v in row] for row in a]


def score_percentiles(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(N, K): fraction of each label's negatives scoring below the row (ties half); NaN without negatives."""
    out = np.full(scores.shape, np.nan)
    for k in range(scores.shape[1]):
        neg = np.sort(scores[labels[:, k] == 0, k])
        if neg.size == 0:
            continue
        below = np.searchsorted(neg, scores[:, k], side="left")
        upto = np.searchsorted(neg, scores[:, k], side="right")
        out[:, k] = (below + 0.5 * (upto - below)) / neg.size
    return out


def measurable_columns(labels: np.ndarray) -> np.ndarray:
    """Boolean (K,): >= MIN_POS positives and >= MIN_NEG negatives."""
    return ((labels == 1).sum(0) >= MIN_POS) & ((labels == 0).sum(0) >= MIN_NEG)


def failure_cases(labels: np.ndarray, triage_pct: np.ndarray, zs_pct: np.ndarray, triage_probs: np.ndarray, names: Sequence[str], per_group: int = 4) -> dict[str, list[dict[str, Any]]]:
    """The three gallery groups as lists of {row, label, triage_pct, zs_pct, triage_prob}; one case per image."""
    ok = measurable_columns(labels)
    pos = (labels == 1) & ok[None, :]
    neg = (labels == 0) & ok[None, :]
    groups = {
        "zeroshot_fails_supervised_succeeds": (pos & (zs_pct <= MISSED) & (triage_pct >= CAUGHT), triage_pct - zs_pct),
        "supervised_fails_zeroshot_succeeds": (pos & (triage_pct <= MISSED) & (zs_pct >= CAUGHT), zs_pct - triage_pct),
        "confident_false_positives": (neg, triage_probs),
    }
    out: dict[str, list[dict[str, Any]]] = {}
    for name, (mask, key) in groups.items():
        rows, cols = np.nonzero(mask)
        order = np.argsort(-key[rows, cols], kind="stable")
        seen: set[int] = set()
        cases = []
        for j in order:
            r, c = int(rows[j]), int(cols[j])
            if r in seen:
                continue
            seen.add(r)
            cases.append({"row": r, "label": names[c], "triage_pct": float(triage_pct[r, c]), "zs_pct": float(zs_pct[r, c]), "triage_prob": float(triage_probs[r, c])})
            if len(cases) == per_group:
                break
        out[name] = cases
    out["counts"] = {name: int(mask.sum()) for name, (mask, _) in groups.items() if name != "confident_false_positives"}  # type: ignore[assignment]
    return out


def template_aucs(encode: Callable[[list[str]], np.ndarray], img: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per-template, per-label zero-shot AUC and each label's spread (max - min over templates).

    Returns (the table, {template: (N, K) scores}) -- the scores are reused for the fairness
    prompt analysis. Only labels with >= 3 positives and negatives get an AUC. The templates are the
    frozen evaluation prompt set's (unseen in training), so the spread is sensitivity to new wording.
    """
    from radclip.eval.prompt_sets import EVAL_NEGATIVE_TEMPLATES as NEGATIVE_TEMPLATES
    from radclip.eval.prompt_sets import EVAL_TEMPLATES as TEMPLATES
    from radclip.eval.zeroshot import eval_set_embeddings, zeroshot_scores

    ok = measurable_columns(labels)
    per_template: dict[str, dict[str, float | None]] = {}
    all_scores: dict[str, np.ndarray] = {}
    for tpl, neg_tpl in zip(TEMPLATES, NEGATIVE_TEMPLATES, strict=True):
        pos, neg = eval_set_embeddings(encode, list(names), tpl, neg_tpl)
        sc = zeroshot_scores(img, pos, neg)
        all_scores[tpl] = sc
        per_template[tpl] = {n: (roc_auc(labels[:, k][~np.isnan(labels[:, k])], sc[:, k][~np.isnan(labels[:, k])]) if ok[k] else None) for k, n in enumerate(names)}
    spread = {}
    for n in names:
        vals = [per_template[t][n] for t in per_template if per_template[t][n] is not None]
        spread[n] = {"min": float(min(vals)), "max": float(max(vals)), "spread": float(max(vals) - min(vals)), "std": float(np.std(vals))} if vals else None
    return {"templates": list(per_template), "negative_templates": list(NEGATIVE_TEMPLATES), "auc": per_template, "spread": spread}, all_scores


def report_similarity(reports: Sequence[str], sims: np.ndarray) -> dict[str, Any]:
    """Spearman correlation of matched image-report cosine with report length and with report informativeness.

    Length = words. Informativeness = number of the 14 findings the report labeller resolves
    (positive, negative or uncertain): a report that names findings is a better caption.
    """
    from scipy.stats import spearmanr

    from radclip.io.labeller import label_reports

    n = len(reports)
    if n < 5:
        return {"n": n, "note": "fewer than 5 image-report pairs; correlation not computed"}
    words = np.array([len(r.split()) for r in reports], dtype=float)
    mentions = (~np.isnan(label_reports(reports)[:, :14])).sum(1).astype(float)
    out: dict[str, Any] = {"n": n, "median_words": float(np.median(words)), "median_findings_named": float(np.median(mentions))}
    for key, x in (("length", words), ("informativeness", mentions)):
        if np.ptp(x) == 0:
            out[key] = {"rho": None, "p": None}
            continue
        rho, p = spearmanr(x, sims)
        out[key] = {"rho": float(rho), "p": float(p)}
    return out
