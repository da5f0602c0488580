"""The release gate: compare a candidate's key metrics with a baseline's on the same data, failing closed.

Both ``radclip report`` (in its JSON twin, key ``gate``) and ``radclip validate`` produce the
same :func:`gate_metrics` block. The gate is a **regression check of an artifact**, never a
selection tool (selection happens on val). It fails when any of these holds:

* the data differs: the blocks record different data snapshots (manifest sha256) or splits.
  Nothing else is compared; the message names the re-baseline command;
* a finding's AUC (triage or zero-shot) dropped by more than ``max_auc_drop`` (0.02, the
  product's rollback criterion) **and** the paired stratified patient-bootstrap 95% CI of the
  drop, computed on the same images from the per-image scores both blocks carry, excludes 0;
* a finding that is measurable in the baseline is missing, renamed, NaN or unmeasurable in
  the candidate (measurable = >= 3 positive and >= 3 negative patients);
* a block lacks what the rules need: per-image scores, a fairness section;
* a fairness flag appears that the baseline did not have (a flag = the 95% CI of an AUC gap
  between subgroups lies wholly above 0.05; see :mod:`radclip.eval.fairness`).

R@5 and ECE are shown for information (no threshold in the product spec).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MAX_AUC_DROP = 0.02  # the product's rollback criterion
GATE_VERSION = 2  # bumped when the block's contents or rules change (older baselines are refused)
REBASELINE_COMMAND = "radclip report --out docs/reports"  # writes docs/reports/report.json, the CI baseline
SCORE_DIGITS = 8  # significant digits of stored per-image scores; both sides of a comparison use the stored values


@dataclass
class DiffRow:
    """One line of the diff table."""

    metric: str  # e.g. "triage AUC Effusion"
    baseline: float | str | None  # baseline value (None = absent / not measurable)
    current: float | str | None  # candidate value
    status: str  # "ok" | "FAIL" | "info" | "new" | "gone" | "skip"
    note: str = ""  # why (e.g. "drop 0.031 > 0.02, CI 0.012..0.050")

    @property
    def delta(self) -> float | None:
        if isinstance(self.baseline, int | float) and isinstance(self.current, int | float):
            return float(self.current) - float(self.baseline)
        return None


@dataclass
class GateResult:
    rows: list[DiffRow] = field(default_factory=list)  # every compared metric
    failures: list[str] = field(default_factory=list)  # human-readable reasons; empty = pass
    data_mismatch: bool = False  # the blocks were measured on different data: nothing was compared

    @property
    def passed(self) -> bool:
        return not self.failures


def score_block(names: list[str], image_ids: list[str], patients: np.ndarray, labels: np.ndarray, triage: np.ndarray, zeroshot: np.ndarray) -> dict[str, Any]:
    """Per-image scores and labels of the evaluated rows (what the paired bootstrap of a later comparison needs)."""

    def rounded(a: np.ndarray) -> list[list[float | None]]:
        return [[None if not math.isfinite(v) else float(f"{v:.{SCORE_DIGITS}g}") for v in row] for row in np.asarray(a, dtype=np.float64)]

    return {"names": list(names), "image_ids": [str(i) for i in image_ids], "patients": [str(p) for p in patients], "labels": rounded(labels), "triage": rounded(triage), "zeroshot": rounded(zeroshot)}


def gate_metrics(per_label_triage: dict[str, Any], per_label_zs: dict[str, Any], retrieval: dict[str, Any] | None, ece: dict[str, Any],
                 fairness: dict[str, Any], meta: dict[str, Any], scores: dict[str, Any] | None = None) -> dict[str, Any]:
    """The compact block the gate compares (stored as ``report["gate"]``); ``meta`` carries split and data snapshot."""
    keys = ("auc", "n_pos", "n_neg", "n_pos_patients", "n_neg_patients", "measurable")

    def slim(per: dict[str, Any]) -> dict[str, Any]:
        return {k: {key: v.get(key) for key in keys} for k, v in per.items()}

    gaps = {}
    for model, attrs in fairness.get("models", {}).items():
        for attr, labels in attrs.items():
            for label, entry in labels.items():
                if entry.get("gap") is not None:
                    gaps[f"{model}/{attr}/{label}"] = {k: entry["gap"].get(k) for k in ("gap", "ci_low", "ci_high")}
    return {
        "gate_version": GATE_VERSION,
        **meta,
        "triage_auc": slim(per_label_triage),
        "zeroshot_auc": slim(per_label_zs),
        "retrieval": {k: v for k, v in (retrieval or {}).items() if k in ("n_images", "n_texts", "i2t_R@5", "t2i_R@5")},
        "ece": ece,
        "fairness": {"threshold": fairness.get("threshold"), "gaps": gaps, "flags": sorted(f["key"] for f in fairness.get("flags", []))},
        "scores": scores,
    }


def load_baseline(path: str | Path) -> dict[str, Any]:
    """The ``gate`` block of a report JSON (or a file that is only that block)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"baseline {p} does not exist; write one with '{REBASELINE_COMMAND}' (DIR/report.json) or pass docs/reports/report.json")
    data = json.loads(p.read_text())
    block = data.get("gate", data)
    if "triage_auc" not in block or "zeroshot_auc" not in block:
        raise ValueError(f"baseline {p} has no gate metrics (keys triage_auc/zeroshot_auc); regenerate it with '{REBASELINE_COMMAND}'")
    return block


def _check_data(baseline: dict[str, Any], current: dict[str, Any], result: GateResult) -> bool:
    """False (and a failure naming the fix) when the two blocks cannot be compared."""
    problems = []
    if baseline.get("gate_version") != GATE_VERSION:
        problems.append(f"baseline gate format {baseline.get('gate_version')!r} is not the current {GATE_VERSION}")
    for key in ("data_snapshot", "split"):
        if baseline.get(key) != current.get(key):
            problems.append(f"{key} differs: baseline {baseline.get(key)!r}, candidate {current.get(key)!r}")
    if not problems:
        return True
    result.data_mismatch = True
    result.failures.append("baseline and candidate were not measured on the same data (" + "; ".join(problems) + "). "
                           f"Nothing was compared. If the data changed, re-baseline the shipped models with '{REBASELINE_COMMAND}' "
                           "and commit it as a data change, not a model change.")
    return False


def _aligned_scores(baseline: dict[str, Any], current: dict[str, Any], result: GateResult) -> tuple[dict[str, Any], dict[str, Any]] | None:
    b, c = baseline.get("scores"), current.get("scores")
    if not b or not c:
        side = "baseline" if not b else "candidate"
        result.failures.append(f"{side} gate block has no per-image scores, so no paired comparison is possible; regenerate it with '{REBASELINE_COMMAND}'")
        return None
    if b["image_ids"] != c["image_ids"]:
        result.failures.append("baseline and candidate scored different images on the same data snapshot; regenerate both with the same --split")
        return None
    return b, c


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(float(v))


def _compare_aucs(kind: str, key: str, baseline: dict[str, Any], current: dict[str, Any], scores: tuple[dict[str, Any], dict[str, Any]] | None,
                  max_drop: float, n_boot: int, result: GateResult) -> None:
    from radclip.eval.metrics import paired_auc_difference

    base, cur = baseline.get(f"{key}_auc", {}), current.get(f"{key}_auc", {})
    for col, label in enumerate(sorted(set(base) | set(cur), key=lambda x: (x not in base, x))):
        b, c = base.get(label), cur.get(label)
        name = f"{kind} AUC {label}"
        if b is None:
            result.rows.append(DiffRow(name, None, c.get("auc") if c else None, "new", "not in baseline"))
            continue
        bv, cv = b.get("auc"), (c or {}).get("auc")
        if not b.get("measurable"):
            result.rows.append(DiffRow(name, bv, cv, "skip", f"not measurable on this data ({b.get('n_pos_patients')} pos / {b.get('n_neg_patients')} neg patients; needs >= 3 / 3)"))
            continue
        why = "missing in candidate (dropped or renamed)" if c is None else "AUC is NaN/absent in candidate" if not _finite(cv) else "not measurable in candidate" if not c.get("measurable") else ""
        if why:
            result.rows.append(DiffRow(name, bv, cv, "FAIL", why))
            result.failures.append(f"{name}: {why}")
            continue
        if scores is None:  # already a failure (see _aligned_scores)
            result.rows.append(DiffRow(name, bv, cv, "FAIL", "no per-image scores for the paired comparison"))
            continue
        sb, sc = scores
        if label not in sb["names"] or label not in sc["names"]:
            result.rows.append(DiffRow(name, bv, cv, "FAIL", "no per-image scores for this finding"))
            result.failures.append(f"{name}: no per-image scores for this finding in the baseline or candidate block")
            continue
        kb, kc = sb["names"].index(label), sc["names"].index(label)
        y = np.array([np.nan if row[kb] is None else row[kb] for row in sb["labels"]], dtype=np.float64)
        tb = np.array([row[kb] for row in sb[key]], dtype=np.float64)
        tc = np.array([row[kc] for row in sc[key]], dtype=np.float64)
        diff = paired_auc_difference(y, tb, tc, np.asarray(sb["patients"]), n_boot=n_boot, seed=17 + col)
        drop, lo, hi = diff["diff"], diff["ci_low"], diff["ci_high"]
        note = f"drop {drop:+.3f}, 95% CI {lo:+.3f}..{hi:+.3f}" if lo is not None else f"drop {drop:+.3f}"
        if is_significant_drop(diff, max_drop):
            result.rows.append(DiffRow(name, bv, cv, "FAIL", note + f" (> {max_drop}, CI excludes 0)"))
            result.failures.append(f"{name} dropped {drop:.3f} (> {max_drop}; paired patient-bootstrap CI {lo:.3f}..{hi:.3f} excludes 0): {bv:.3f} -> {cv:.3f}")
        else:
            result.rows.append(DiffRow(name, bv, cv, "ok", note))


def compare(baseline: dict[str, Any], current: dict[str, Any], max_auc_drop: float = MAX_AUC_DROP, n_boot: int = 1000) -> GateResult:
    """Compare two gate blocks; see the module doc for what fails."""
    result = GateResult()
    if not _check_data(baseline, current, result):
        return result
    scores = _aligned_scores(baseline, current, result)
    _compare_aucs("triage", "triage", baseline, current, scores, max_auc_drop, n_boot, result)
    _compare_aucs("zero-shot", "zeroshot", baseline, current, scores, max_auc_drop, n_boot, result)
    for key in ("i2t_R@5", "t2i_R@5"):
        result.rows.append(DiffRow(f"retrieval {key}", baseline.get("retrieval", {}).get(key), current.get("retrieval", {}).get(key), "info"))
    for key in sorted(set(baseline.get("ece", {})) | set(current.get("ece", {}))):
        result.rows.append(DiffRow(f"ECE {key}", baseline.get("ece", {}).get(key), current.get("ece", {}).get(key), "info"))
    _compare_fairness(baseline, current, result)
    return result


def _compare_fairness(baseline: dict[str, Any], current: dict[str, Any], result: GateResult) -> None:
    for side, block in (("baseline", baseline), ("candidate", current)):
        if not isinstance(block.get("fairness"), dict) or "flags" not in block["fairness"]:
            result.failures.append(f"{side} gate block has no fairness section; regenerate it with '{REBASELINE_COMMAND}' (fairness is part of the gate)")
            return
    fb, fc = baseline["fairness"], current["fairness"]
    base_flags, cur_flags = set(fb["flags"]), set(fc["flags"])
    for flag in sorted(base_flags | cur_flags):
        gb, gc = fb["gaps"].get(flag, {}), fc["gaps"].get(flag, {})
        row = DiffRow(f"fairness flag {flag}", gb.get("gap"), gc.get("gap"), "info", "flag in both")
        if flag in cur_flags and flag not in base_flags:
            row.status, row.note = "FAIL", f"new flag (gap CI {gc.get('ci_low', float('nan')):.3f}..{gc.get('ci_high', float('nan')):.3f} lies above {fc.get('threshold')})"
            result.failures.append(f"new fairness flag {flag}: gap {gc.get('gap', float('nan')):.3f}, CI {gc.get('ci_low', float('nan')):.3f}..{gc.get('ci_high', float('nan')):.3f}")
        elif flag in base_flags and flag not in cur_flags:
            row.status, row.note = "gone", "flag cleared"
        result.rows.append(row)


def is_significant_drop(diff: dict[str, Any], max_drop: float = MAX_AUC_DROP) -> bool:
    """The rollback rule, shared by the offline gate and the live feedback monitor.

    ``diff`` is :func:`radclip.eval.metrics.paired_auc_difference` of (baseline/production, candidate):
    the drop exceeds ``max_drop`` and its paired bootstrap CI excludes 0 (no CI: the point estimate decides).
    """
    drop, lo = diff.get("diff"), diff.get("ci_low")
    return drop is not None and drop > max_drop and (lo is None or lo > 0)


def _fmt(v: float | str | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, int | float) else str(v)


def format_diff(result: GateResult, baseline_name: str = "baseline", verbose: bool = False) -> str:
    """A fixed-width table (skipped rows only with ``verbose``) and a PASS/FAIL verdict line."""
    rows = [r for r in result.rows if verbose or r.status != "skip"]
    width = max([len(r.metric) for r in rows] + [6])
    lines = [f"{'metric':<{width}}  {baseline_name:>9}  {'current':>9}  {'delta':>7}  status  note", "-" * (width + 48)]
    for r in rows:
        d = r.delta
        lines.append(f"{r.metric:<{width}}  {_fmt(r.baseline):>9}  {_fmt(r.current):>9}  {(f'{d:+.3f}' if d is not None else '-'):>7}  {r.status:<6}  {r.note}")
    skipped = sum(r.status == "skip" for r in result.rows)
    if skipped and not verbose:
        lines.append(f"({skipped} finding(s) not measurable on this data were not compared; --verbose lists them)")
    if result.passed:
        lines.append("GATE PASSED: no measurable AUC dropped significantly by more than the limit, nothing missing, no new fairness flag")
    else:
        lines.append(f"GATE FAILED ({len(result.failures)}):")
        lines += [f"  - {f}" for f in result.failures]
    return "\n".join(lines)
