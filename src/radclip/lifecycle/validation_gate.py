"""One scheduled validation: the release gate of ``radclip validate`` on a labelled set, with the evidence for review.

The rules are the gate's own (:func:`radclip.eval.gate.compare` on the block that
:func:`radclip.eval.report.compute_gate` computes; exit codes as ``radclip validate``: 0 pass,
1 significant AUC drop / missing finding / new fairness flag, 2 bad baseline, 3 other data).
The only difference: :func:`run_gate` makes compute_gate's two calls itself (``collect_inputs``
then ``core_metrics``) so that the same model pass also yields the image-text embeddings the review
log needs; nothing is computed twice and no rule is restated here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radclip.eval.gate import MAX_AUC_DROP
from radclip.lifecycle.validation_review import FindingFailure, ReviewEvidence

EXIT_PASS, EXIT_FAIL, EXIT_BAD_BASELINE, EXIT_OTHER_DATA, EXIT_ERROR = 0, 1, 2, 3, 4
EXIT_REASONS = {EXIT_PASS: "passed", EXIT_FAIL: "gate failed", EXIT_BAD_BASELINE: "bad baseline",
                EXIT_OTHER_DATA: "other data", EXIT_ERROR: "run error"}  # fmt: skip
AUC_ROW_PREFIXES = {"triage AUC ": "triage", "zero-shot AUC ": "zero-shot"}  # the gate's diff-row names


@dataclass
class GateConfig:
    """What one scheduled validation evaluates (the options of ``radclip validate``)."""

    baseline: Path  # gate block (or report.json) of the production models on the same manifest and split
    manifest: Path  # manifest CSV of the labelled set
    images_root: Path | None = None  # folder of the manifest paths; None = the manifest's
    split: str = "val"  # manifest split; never "test" (the release gate's, looked at once per release)
    triage_model: str | None = None  # name or path; None = settings.triage_model
    clip_model: str | None = None  # name or path; None = settings.clip_model
    max_auc_drop: float = MAX_AUC_DROP  # the rollback criterion (0.02)
    n_boot: int = 300  # patient-bootstrap resamples for the block's CIs (fairness)
    n_boot_diff: int = 1000  # paired resamples for each AUC drop's CI
    seed: int = 0

    def __post_init__(self) -> None:
        if self.split == "test":
            raise ValueError("the scheduled validation must not use the test split (it is the release gate's, looked at once "
                             "per release); pass --split val (the default) or a labelled set from the site")  # fmt: skip

    def run_config(self) -> Any:
        from radclip.eval.report_inputs import RunConfig

        return RunConfig(manifest=Path(self.manifest), images_root=Path(self.images_root or Path(self.manifest).parent),
                         split=None if self.split == "all" else self.split, triage_model=self.triage_model,
                         clip_model=self.clip_model, n_boot=self.n_boot, seed=self.seed)  # fmt: skip


@dataclass
class GateOutcome:
    """The verdict of one run, in ``radclip validate``'s terms."""

    exit_code: int  # EXIT_* (0 pass, 1 fail, 2 bad baseline, 3 other data, 4 the run raised)
    reason: str  # one line: why this exit code
    failures: list[str] = field(default_factory=list)  # the gate's reasons (empty = pass)
    findings: list[FindingFailure] = field(default_factory=list)  # failing findings (a subset of the reasons)
    table: str = ""  # the gate's diff table (format_diff)
    evidence: ReviewEvidence | None = None  # for the review log (None when no model pass happened)
    models: dict[str, Any] = field(default_factory=dict)  # names, versions and sha256 of the evaluated models

    @property
    def passed(self) -> bool:
        return self.exit_code == EXIT_PASS

    @property
    def compared(self) -> bool:
        """True when the gate compared like with like (pass or fail), so the verdict says something about the model."""
        return self.exit_code in (EXIT_PASS, EXIT_FAIL)


def failing_findings(result: Any) -> list[FindingFailure]:
    """The findings of a :class:`radclip.eval.gate.GateResult` whose AUC rows failed."""
    out = []
    for row in result.rows:
        prefix = next((p for p in AUC_ROW_PREFIXES if row.metric.startswith(p)), None)
        if row.status != "FAIL" or prefix is None:
            continue
        num = [
            v if isinstance(v, int | float) and np.isfinite(v) else None for v in (row.baseline, row.current)
        ]
        out.append(
            FindingFailure(AUC_ROW_PREFIXES[prefix], row.metric[len(prefix) :], num[0], num[1], row.note)
        )
    return out


def _baseline_scores(
    baseline: dict[str, Any], image_ids: list[str], names: list[str], key: str
) -> np.ndarray | None:
    block = baseline.get("scores") or {}
    if block.get("image_ids") != image_ids or not block.get(key):
        return None
    cols = [block["names"].index(n) if n in block["names"] else None for n in names]
    rows = np.array(
        [[np.nan if c is None or r[c] is None else r[c] for c in cols] for r in block[key]], dtype=np.float64
    )
    return rows


def _evidence(inputs: Any, baseline: dict[str, Any]) -> ReviewEvidence:
    rows = inputs.nih_rows  # the rows the gate scores (known NIH labels)
    frame = inputs.frame.iloc[rows]
    ids, names = [str(i) for i in frame["image_id"]], list(inputs.names)
    return ReviewEvidence(names=names, image_ids=ids, patients=[str(p) for p in frame["patient_id"]],
                          paths=[str(p) for p in frame["path"]], labels=inputs.labels[rows], triage=inputs.triage_logits[rows],
                          zeroshot=inputs.zs_scores[rows], embeddings=inputs.clip_images[rows],
                          baseline_triage=_baseline_scores(baseline, ids, names, "triage"),
                          baseline_zeroshot=_baseline_scores(baseline, ids, names, "zeroshot"))  # fmt: skip


def _precheck(cfg: GateConfig) -> tuple[dict[str, Any] | None, GateOutcome | None]:
    """The baseline block, or the outcome that stops the run before the (minutes-long) model pass."""
    from radclip.eval.gate import REBASELINE_COMMAND, load_baseline
    from radclip.io.manifest import data_snapshot

    try:
        baseline = load_baseline(cfg.baseline)
    except (FileNotFoundError, ValueError, json.JSONDecodeError) as exc:
        hint = "; for the scheduled validation write one with 'radclip monitor validate-schedule --write-baseline'"
        return None, GateOutcome(EXIT_BAD_BASELINE, f"bad baseline: {exc}{hint}", [str(exc)])
    if not Path(cfg.manifest).is_file():
        why = f"manifest {cfg.manifest} not found; pass --manifest or set RADCLIP_DATA_ROOT"
        return None, GateOutcome(EXIT_OTHER_DATA, why, [why])
    split = None if cfg.split == "all" else cfg.split
    here = {"data_snapshot": data_snapshot(cfg.manifest), "split": split}
    diff = [
        f"{k}: baseline {baseline.get(k)!r}, this run {v!r}" for k, v in here.items() if baseline.get(k) != v
    ]
    if diff:
        why = (
            f"the baseline {cfg.baseline} was measured on other data ({'; '.join(diff)}); write a baseline for this set with "
            f"'radclip monitor validate-schedule --write-baseline' (or '{REBASELINE_COMMAND} --split {cfg.split}')"
        )
        return None, GateOutcome(EXIT_OTHER_DATA, why, [why])
    return baseline, None


def run_gate(cfg: GateConfig) -> GateOutcome:
    """One validation: the gate block on ``cfg``'s labelled set compared with the baseline (validate's rules and exit codes)."""
    from radclip.eval.gate import compare, format_diff
    from radclip.eval.report import core_metrics
    from radclip.eval.report_inputs import collect_inputs

    baseline, stop = _precheck(cfg)
    if stop is not None:
        return stop
    assert baseline is not None
    run_cfg = cfg.run_config()
    inputs = collect_inputs(run_cfg)  # compute_gate(run_cfg), keeping the pass's embeddings
    current = core_metrics(inputs, run_cfg)["gate"]
    result = compare(baseline, current, max_auc_drop=cfg.max_auc_drop, n_boot=cfg.n_boot_diff)
    code = EXIT_OTHER_DATA if result.data_mismatch else EXIT_PASS if result.passed else EXIT_FAIL
    reason = (
        EXIT_REASONS[code] if code == EXIT_PASS else f"{EXIT_REASONS[code]}: " + "; ".join(result.failures)
    )
    return GateOutcome(code, reason, list(result.failures), failing_findings(result), format_diff(result),
                       _evidence(inputs, baseline), dict(current.get("models") or {}))  # fmt: skip


def write_baseline(cfg: GateConfig, force: bool = False) -> dict[str, Any]:
    """Compute the gate block of the configured (production) models on the labelled set and write it to ``cfg.baseline``."""
    from radclip.eval.report import compute_gate

    out = Path(cfg.baseline)
    if out.exists() and not force:
        raise FileExistsError(
            f"baseline {out} exists; a baseline is replaced deliberately: pass --force, or another --baseline path"
        )
    block = compute_gate(cfg.run_config())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(block, indent=1) + "\n")
    return block
