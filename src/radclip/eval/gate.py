"""The release gate: compare the key metrics of a candidate against a baseline report and print a diff.

Both ``radclip report`` (in its JSON twin, key ``gate``) and ``radclip validate`` produce the
same :func:`gate_metrics` block. The gate fails (rollback criterion) when

* a label's AUC (triage or zero-shot) drops by more than ``max_auc_drop`` (0.02), counted only
  for labels measurable (>= 3 positives and >= 3 negatives) in both baseline and candidate; or
* a fairness flag (gap > 0.05 between groups, see :mod:`radclip.eval.fairness`) appears that
  the baseline did not have.

R@5, ECE and fairness-gap sizes are shown for information (no threshold in the product spec).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_AUC_DROP = 0.02  # the product's rollback criterion


@dataclass
class DiffRow:
    """One line of the diff table."""

    metric: str  # e.g. "triage AUC Effusion"
    baseline: float | str | None  # baseline value (None = absent / not measurable)
    current: float | str | None  # candidate value
    status: str  # "ok" | "FAIL" | "info" | "new" | "gone" | "skip"
    note: str = ""  # why (e.g. "drop 0.031 > 0.02", "not measurable in candidate")

    @property
    def delta(self) -> float | None:
        if isinstance(self.baseline, int | float) and isinstance(self.current, int | float):
            return float(self.current) - float(self.baseline)
        return None


@dataclass
class GateResult:
    rows: list[DiffRow] = field(default_factory=list)  # every compared metric
    failures: list[str] = field(default_factory=list)  # human-readable reasons; empty = pass

    @property
    def passed(self) -> bool:
        return not self.failures


def gate_metrics(per_label_triage: dict[str, Any], per_label_zs: dict[str, Any], retrieval: dict[str, Any] | None, ece: dict[str, Any], fairness: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """The compact block the gate compares (stored as ``report["gate"]``)."""

    def slim(per: dict[str, Any]) -> dict[str, Any]:
        return {k: {"auc": v.get("auc"), "n_pos": v.get("n_pos"), "n_neg": v.get("n_neg"), "measurable": bool(v.get("measurable"))} for k, v in per.items()}

    gaps = {}
    for model, attrs in fairness.get("models", {}).items():
        for attr, labels in attrs.items():
            for label, entry in labels.items():
                if entry.get("gap") is not None:
                    gaps[f"{model}/{attr}/{label}"] = entry["gap"]["gap"]
    return {
        **meta,
        "triage_auc": slim(per_label_triage),
        "zeroshot_auc": slim(per_label_zs),
        "retrieval": {k: v for k, v in (retrieval or {}).items() if k in ("n_images", "n_texts", "i2t_R@5", "t2i_R@5")},
        "ece": ece,
        "fairness_gaps": gaps,
        "fairness_flags": sorted(f["key"] for f in fairness.get("flags", [])),
        "fairness_flags_significant": sorted(f["key"] for f in fairness.get("flags", []) if f.get("excludes_zero")),
    }


def load_baseline(path: str | Path) -> dict[str, Any]:
    """The ``gate`` block of a report JSON (or a file that is only that block)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"baseline {p} does not exist; write one with 'radclip report --out DIR' (DIR/report.json) or pass docs/reports/report.json")
    data = json.loads(p.read_text())
    block = data.get("gate", data)
    if "triage_auc" not in block or "zeroshot_auc" not in block:
        raise ValueError(f"baseline {p} has no gate metrics (keys triage_auc/zeroshot_auc); regenerate it with 'radclip report'")
    return block


def _compare_aucs(kind: str, base: dict[str, Any], cur: dict[str, Any], max_drop: float, result: GateResult) -> None:
    for label in sorted(set(base) | set(cur), key=lambda x: (x not in base, x)):
        b, c = base.get(label, {}), cur.get(label, {})
        bv, cv = b.get("auc"), c.get("auc")
        name = f"{kind} AUC {label}"
        if not (b.get("measurable") and c.get("measurable")) or bv is None or cv is None:
            why = "not measurable in baseline" if not b.get("measurable") else "not measurable in candidate"
            result.rows.append(DiffRow(name, bv, cv, "skip", f"{why} (needs >=3 pos and >=3 neg)"))
            continue
        drop = bv - cv
        if drop > max_drop:
            result.rows.append(DiffRow(name, bv, cv, "FAIL", f"drop {drop:.3f} > {max_drop}"))
            result.failures.append(f"{name} dropped {drop:.3f} (> {max_drop}): {bv:.3f} -> {cv:.3f}")
        else:
            result.rows.append(DiffRow(name, bv, cv, "ok"))


def compare(baseline: dict[str, Any], current: dict[str, Any], max_auc_drop: float = MAX_AUC_DROP, significant_flags_only: bool = False) -> GateResult:
    """Compare two gate blocks; see the module doc for what fails.

    ``significant_flags_only``: a new fairness flag fails the gate only when its gap's bootstrap CI
    excludes zero (the default counts every gap > 0.05, as the product spec states).
    """
    result = GateResult()
    _compare_aucs("triage", baseline.get("triage_auc", {}), current.get("triage_auc", {}), max_auc_drop, result)
    _compare_aucs("zero-shot", baseline.get("zeroshot_auc", {}), current.get("zeroshot_auc", {}), max_auc_drop, result)
    for key in ("i2t_R@5", "t2i_R@5"):
        result.rows.append(DiffRow(f"retrieval {key}", baseline.get("retrieval", {}).get(key), current.get("retrieval", {}).get(key), "info"))
    for key in sorted(set(baseline.get("ece", {})) | set(current.get("ece", {}))):
        result.rows.append(DiffRow(f"ECE {key}", baseline.get("ece", {}).get(key), current.get("ece", {}).get(key), "info"))
    key = "fairness_flags_significant" if significant_flags_only else "fairness_flags"
    base_flags, cur_flags = set(baseline.get(key, [])), set(current.get(key, []))
    gaps_b, gaps_c = baseline.get("fairness_gaps", {}), current.get("fairness_gaps", {})
    for flag in sorted(base_flags | cur_flags):
        row = DiffRow(f"fairness flag {flag}", gaps_b.get(flag), gaps_c.get(flag), "info", "flag in both")
        if flag in cur_flags and flag not in base_flags:
            row.status, row.note = "FAIL", "new flag (gap > 0.05" + (", CI excludes 0)" if significant_flags_only else ")")
            result.failures.append(f"new fairness flag {flag}: gap {gaps_c.get(flag, float('nan')):.3f}")
        elif flag in base_flags and flag not in cur_flags:
            row.status, row.note = "gone", "flag cleared"
        result.rows.append(row)
    return result


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
        lines.append(f"({skipped} label(s) not measurable in baseline or candidate were not compared; --verbose lists them)")
    if result.passed:
        lines.append("GATE PASSED: no measurable AUC dropped by more than the limit and no new fairness flag")
    else:
        lines.append(f"GATE FAILED ({len(result.failures)}):")
        lines += [f"  - {f}" for f in result.failures]
    return "\n".join(lines)
