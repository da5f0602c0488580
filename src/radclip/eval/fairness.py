"""Subgroup AUCs (sex, age band) with patient-bootstrap CIs, and the gaps between groups.

Definitions (also in ``docs/evaluation.md``):

* **Groups**: sex ``M`` / ``F`` (blank = excluded); age bands ``<40`` (age < 40), ``40-60``
  (40 <= age <= 60), ``>60`` (age > 60); a row without age is excluded from the age analysis.
* A group's AUC for a label is reported as measurable when the group's rows come from >= 3
  positive and >= 3 negative patients (``metrics.MIN_POS`` / ``MIN_NEG``); otherwise it is
  named as too small.
* **Gap** of a label for an attribute: best measurable group's AUC minus worst's (for sex,
  |AUC_M - AUC_F| with the pair's order recorded). **Flagged** only when the gap's 95% CI lies
  wholly above ``threshold`` (0.05): with small subgroups the point gap is mostly noise (data v2
  raised 30+ point-estimate "flags"). The point estimate and the CI are always reported, and
  ``above_threshold`` says whether the point estimate alone exceeds it.
* **Gap CI**: paired percentile bootstrap. Each resample draws whole patients (with
  replacement) from all labelled rows of the split, then computes both groups' AUCs on that
  same resample and takes their difference (best minus worst, the pair fixed by the point
  estimate). The gap "excludes zero" when the 95% CI's lower end is > 0.
* Bootstrap AUCs are computed for all resamples at once as weighted rank AUCs (a row drawn
  k times weighs k), identical to the rank AUC of the expanded resample (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from radclip.eval.metrics import is_measurable, patient_counts, roc_auc
from radclip.eval.patient_bootstrap import weighted_auc  # one weighted (bootstrap) AUC for the package

GAP_THRESHOLD = 0.05  # the product's fairness flag: AUC gap between groups larger than this
AGE_BANDS = ("<40", "40-60", ">60")


def age_band(age: float) -> str:
    """``<40`` / ``40-60`` / ``>60`` ('' for an unknown age)."""
    if age is None or not np.isfinite(age):
        return ""
    if age < 40:
        return "<40"
    return "40-60" if age <= 60 else ">60"


def sex_group(value: Any) -> str:
    """``M`` / ``F`` ('' for anything else, e.g. blank)."""
    v = str(value).strip().upper()[:1] if value is not None else ""
    return v if v in ("M", "F") else ""


def attribute_groups(frame: Any) -> dict[str, np.ndarray]:
    """{"sex": (N,) group names, "age": (N,) band names} for a manifest frame ('' = unknown)."""
    return {
        "sex": np.array([sex_group(v) for v in frame["sex"]], dtype=object),
        "age": np.array([age_band(float(v)) for v in frame["age"]], dtype=object),
    }


def bootstrap_weights(patients: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, N) row multiplicities of patient-level bootstrap resamples (whole patients with replacement)."""
    _, inverse = np.unique(patients.astype(str), return_inverse=True)
    n_pat = int(inverse.max()) + 1 if len(inverse) else 0
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, n_pat, size=n_pat), minlength=n_pat) for _ in range(n_boot)]) if n_pat else np.zeros((n_boot, 0))
    return counts[:, inverse].astype(np.float64)


def _percentile_ci(values: np.ndarray, n_boot: int) -> tuple[float | None, float | None, int]:
    ok = values[np.isfinite(values)]
    if len(ok) < max(1, n_boot // 2):
        return None, None, len(ok)
    lo, hi = np.percentile(ok, [2.5, 97.5])
    return float(lo), float(hi), len(ok)


def gap_with_ci(y: np.ndarray, s: np.ndarray, groups: np.ndarray, patients: np.ndarray, hi: str, lo: str, n_boot: int = 300, seed: int = 0) -> dict[str, Any]:
    """AUC(hi) - AUC(lo) and its paired patient-bootstrap 95% CI (rows with unknown y dropped)."""
    keep = (y == 0) | (y == 1)
    y, s, g, p = y[keep], s[keep], groups[keep], patients[keep]
    in_hi, in_lo = g == hi, g == lo
    gap = roc_auc(y[in_hi], s[in_hi]) - roc_auc(y[in_lo], s[in_lo])
    w = bootstrap_weights(p, n_boot, seed)  # one resample of patients, shared by both groups (paired)
    boots = weighted_auc(y[in_hi], s[in_hi], w[:, in_hi]) - weighted_auc(y[in_lo], s[in_lo], w[:, in_lo])
    lo_q, hi_q, used = _percentile_ci(boots, n_boot)
    return {"gap": float(gap), "ci_low": lo_q, "ci_high": hi_q, "excludes_zero": bool(lo_q is not None and lo_q > 0), "n_boot_used": used}


def label_by_group(y: np.ndarray, s: np.ndarray, groups: np.ndarray, patients: np.ndarray, n_boot: int, seed: int) -> dict[str, dict[str, Any]]:
    """{group: {auc, ci_low, ci_high, n_pos, n_neg, measurable}} for one label (patient-bootstrap CI within the group)."""
    out = {}
    for i, grp in enumerate(sorted(set(groups) - {""})):
        rows = (groups == grp) & ((y == 0) | (y == 1))
        yy, ss = y[rows], s[rows]
        n_pos, n_neg = int((yy == 1).sum()), int((yy == 0).sum())
        pp, pn = patient_counts(yy, patients[rows])
        auc = roc_auc(yy, ss) if n_pos and n_neg else None
        lo = hi = None
        if auc is not None and n_boot > 0:
            lo, hi, _ = _percentile_ci(weighted_auc(yy, ss, bootstrap_weights(patients[rows], n_boot, seed + 101 * i)), n_boot)
        out[grp] = {"auc": auc, "ci_low": lo, "ci_high": hi, "n_pos": n_pos, "n_neg": n_neg, "n_pos_patients": pp, "n_neg_patients": pn, "measurable": is_measurable(pp, pn)}
    return out


def label_gap(per_group: dict[str, dict[str, Any]], y: np.ndarray, s: np.ndarray, groups: np.ndarray, patients: np.ndarray, n_boot: int, seed: int, threshold: float) -> dict[str, Any] | None:
    """The best-minus-worst gap over measurable groups, with its CI and flag; None with < 2 measurable groups."""
    ok = {g: r["auc"] for g, r in per_group.items() if r["measurable"] and r["auc"] is not None}
    if len(ok) < 2:
        return None
    hi = max(ok, key=lambda g: ok[g])
    lo = min(ok, key=lambda g: ok[g])
    res = gap_with_ci(y, s, groups, patients, hi, lo, n_boot=n_boot, seed=seed)
    res.update({"higher": hi, "lower": lo, "above_threshold": bool(res["gap"] > threshold),
                "flagged": bool(res["ci_low"] is not None and res["ci_low"] > threshold)})
    return res


def fairness_analysis(
    labels: np.ndarray,
    scores: dict[str, np.ndarray],
    names: Sequence[str],
    attributes: dict[str, np.ndarray],
    patients: np.ndarray,
    n_boot: int = 300,
    seed: int = 0,
    threshold: float = GAP_THRESHOLD,
) -> dict[str, Any]:
    """Per model, attribute and label: group AUCs, the gap and its CI; plus the list of flags.

    ``labels`` (N, K) NaN = unknown; ``scores`` {model name: (N, K)}; ``attributes``
    {attribute: (N,) group names, '' = unknown}. Only labels measurable on all rows are analysed.
    """
    out: dict[str, Any] = {"threshold": threshold, "n_boot": n_boot, "models": {}, "flags": [], "groups": {}}
    for attr, groups in attributes.items():
        out["groups"][attr] = {g: int((groups == g).sum()) for g in sorted(set(groups) - {""})}
    for model, sc in scores.items():
        per_model: dict[str, Any] = {}
        for attr, groups in attributes.items():
            per_attr: dict[str, Any] = {}
            for k, name in enumerate(names):
                y = labels[:, k]
                known = (y == 0) | (y == 1)
                if not is_measurable(*patient_counts(y[known], patients[known])):
                    continue
                per_group = label_by_group(y, sc[:, k], groups, patients, n_boot, seed + 7 * k)
                gap = label_gap(per_group, y, sc[:, k], groups, patients, n_boot, seed + 13 * k, threshold)
                per_attr[name] = {"groups": per_group, "gap": gap}
                if gap is not None and gap["flagged"]:
                    out["flags"].append({"key": flag_key(model, attr, name), "model": model, "attribute": attr, "label": name, **gap})
            per_model[attr] = per_attr
        out["models"][model] = per_model
    return out


def flag_key(model: str, attribute: str, label: str) -> str:
    """The identity of a fairness flag (what the release gate compares)."""
    return f"{model}/{attribute}/{label}"


def prompt_group_gaps(labels: np.ndarray, template_scores: dict[str, np.ndarray], names: Sequence[str], attributes: dict[str, np.ndarray], threshold: float = GAP_THRESHOLD) -> dict[str, Any]:
    """Does prompt wording affect groups differently? Per attribute and label: the group gap per template.

    For each template the gap is AUC(higher) - AUC(lower) for the pair fixed by the first
    template where both groups are measurable (so a sign change shows as a negative gap).
    ``differs`` = the gaps' spread over templates > ``threshold`` or their sign changes.
    """
    out: dict[str, Any] = {}
    for attr, groups in attributes.items():
        per_attr: dict[str, Any] = {}
        for k, name in enumerate(names):
            gaps: dict[str, float] = {}
            pair: tuple[str, str] | None = None
            for tpl, sc in template_scores.items():
                aucs = _group_point_aucs(labels[:, k], sc[:, k], groups)
                if len(aucs) < 2:
                    continue
                if pair is None:
                    pair = (max(aucs, key=lambda g: aucs[g]), min(aucs, key=lambda g: aucs[g]))
                if pair[0] in aucs and pair[1] in aucs:
                    gaps[tpl] = aucs[pair[0]] - aucs[pair[1]]
            if not gaps or pair is None:
                continue
            vals = list(gaps.values())
            spread = float(max(vals) - min(vals))
            per_attr[name] = {"higher": pair[0], "lower": pair[1], "gap_per_template": gaps, "spread": spread,
                              "sign_change": bool(min(vals) < 0 < max(vals)), "differs": bool(spread > threshold or min(vals) < 0 < max(vals))}
        out[attr] = per_attr
    return out


def _group_point_aucs(y: np.ndarray, s: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    out = {}
    for grp in sorted(set(groups) - {""}):
        rows = (groups == grp) & ((y == 0) | (y == 1))
        yy = y[rows]
        if (yy == 1).sum() >= 3 and (yy == 0).sum() >= 3:  # point estimates only: image counts
            out[grp] = roc_auc(yy, s[rows])
    return out
