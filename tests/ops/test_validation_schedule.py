"""Scheduled validation (concept drift): schedule, history, metrics and review log, with an injected gate (no model)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tests.ops.validation_helpers import (
    FakeClock,
    config,
    evidence,
    failing,
    history,
    other_data,
    passing,
    scripted,
    starts,
)

from radclip.lifecycle.validation_gate import GateConfig, GateOutcome, failing_findings
from radclip.lifecycle.validation_review import FindingFailure, affected_cases
from radclip.lifecycle.validation_schedule import (
    HOUR,
    EmbeddingDrift,
    ScheduleConfig,
    ValidationMetrics,
    ValidationScheduler,
    next_interval,
)


def test_interval_shortens_after_a_failed_run_and_returns_after_a_pass(tmp_path: Path) -> None:
    clock = FakeClock()
    sched = ValidationScheduler(
        config(tmp_path, 4),
        gate=scripted(passing, failing, failing, passing),
        clock=clock,
        sleep=clock.sleep,
        echo=lambda s: None,
    )
    assert sched.run() == 0
    lines = history(tmp_path)
    assert [h["exit_code"] for h in lines] == [0, 1, 1, 0]
    assert [h["next_interval_s"] / HOUR for h in lines] == [24, 4, 4, 24]
    assert starts(lines) == [24, 4, 4]  # run 2 a day after run 1; runs 3 and 4 four hours apart
    assert [h["drift"]["concept"] for h in lines] == [False, True, True, False]


def test_runs_that_compare_nothing_keep_the_concept_drift_state(tmp_path: Path) -> None:
    clock = FakeClock()
    sched = ValidationScheduler(
        config(tmp_path, 4),
        gate=scripted(failing, other_data, passing, other_data),
        clock=clock,
        sleep=clock.sleep,
        echo=lambda s: None,
    )
    assert sched.run() == 3
    assert [h["next_interval_s"] / HOUR for h in history(tmp_path)] == [4, 4, 24, 24]


def test_embedding_drift_mid_wait_brings_the_next_run_forward_and_latches_until_a_run(tmp_path: Path) -> None:
    clock = FakeClock()
    t0 = clock.t

    def probe() -> (
        EmbeddingDrift
    ):  # /readyz over time: quiet, drifting from hour 6 until hour 12, then quiet again
        hours = (clock.t - t0) / HOUR
        return EmbeddingDrift("active", 0.15 if 6 <= hours < 12 else 0.02, 0.10)

    sched = ValidationScheduler(config(tmp_path, 4), gate=scripted(passing, passing, passing, passing), drift_probe=probe,
                                clock=clock, sleep=clock.sleep, echo=lambda s: None)  # fmt: skip
    sched.run()
    lines = history(tmp_path)
    # run 1 at 0 h (quiet: next in 24 h); drift seen at the 6 h poll -> due at 4 h -> run 2 at once (6 h);
    # drifting after runs 2 and 3 -> 4 h apart (10 h, 14 h): drift cleared at 12 h, but only a run clears it;
    # run 4 passes with no drift -> back to a day
    assert starts(lines) == [6, 4, 4]
    assert [h["drift"]["embedding"]["drifting"] for h in lines] == [False, True, True, False]
    assert [h["next_interval_s"] / HOUR for h in lines] == [24, 4, 4, 24]
    assert max(clock.sleeps) <= HOUR  # waited in polls, not one long sleep


@pytest.mark.parametrize(("reading", "drifting"), [
    (EmbeddingDrift("active", 0.15, 0.10), True),
    (EmbeddingDrift("active", 0.10, 0.10), False),  # at the threshold, not above
    (EmbeddingDrift("active", 0.05, 0.10), False),
    (EmbeddingDrift("filling", None, 0.10), False),  # window not full: no value yet
    (EmbeddingDrift("unavailable"), False),
    (EmbeddingDrift("unreachable"), False),
])  # fmt: skip
def test_embedding_drift_counts_only_when_active_and_above_threshold(
    reading: EmbeddingDrift, drifting: bool, tmp_path: Path
) -> None:
    assert reading.drifting is drifting
    cfg = config(tmp_path, 1)
    assert next_interval(cfg, False, reading.drifting) == (4 * HOUR if drifting else 24 * HOUR)
    assert next_interval(cfg, True, reading.drifting) == 4 * HOUR


def test_history_is_append_only_and_names_the_failing_findings_and_review(tmp_path: Path) -> None:
    for outcome in (passing, failing):
        clock = FakeClock()
        ValidationScheduler(
            config(tmp_path, 1), gate=scripted(outcome), clock=clock, sleep=clock.sleep, echo=lambda s: None
        ).run()
    first, second = history(tmp_path)
    assert first["passed"] is True and first["failed_findings"] == [] and first["review"] is None
    assert (
        second["passed"] is False
        and second["exit_code"] == 1
        and second["exit_reason"].startswith("gate failed")
    )
    eff, mass = second["failed_findings"]
    assert (eff["model"], eff["finding"], eff["auc_drop"]) == ("triage", "Effusion", pytest.approx(0.10))
    assert (mass["finding"], mass["current_auc"], mass["auc_drop"]) == ("Mass", None, None)
    assert second["review"] and Path(second["review"]).is_dir()
    assert second["time"].endswith("+00:00") and second["split"] == "val"


def test_review_log_written_only_on_failure_with_the_images_behind_each_finding(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    clock = FakeClock()
    ValidationScheduler(
        config(tmp_path, 1), gate=scripted(passing), clock=clock, sleep=clock.sleep, echo=lambda s: None
    ).run()
    assert not (tmp_path / "review").exists()
    ValidationScheduler(
        config(tmp_path, 1), gate=scripted(failing), clock=clock, sleep=clock.sleep, echo=lambda s: None
    ).run()
    (folder,) = (tmp_path / "review").iterdir()
    ev = evidence()
    tensors = load_file(str(folder / "embeddings.safetensors"))
    rows = list(csv.DictReader((folder / "cases.csv").open()))
    for model, finding, k in (("triage", "Effusion", 0), ("zero-shot", "Mass", 1)):
        mine = [r for r in rows if r["finding"] == finding]
        pos = np.flatnonzero(ev.labels[:, k] == 1)
        assert sorted(r["image_id"] for r in mine if r["role"] == "positive") == sorted(
            ev.image_ids[i] for i in pos
        )
        negs = [r for r in mine if r["role"] == "top-scored negative"]
        scores = ev.triage if model == "triage" else ev.zeroshot
        neg = np.flatnonzero(ev.labels[:, k] == 0)
        top = set(neg[np.argsort(-scores[neg, k])[: len(pos)]])
        assert {ev.image_ids.index(r["image_id"]) for r in negs} == top  # the candidate's strongest negatives
        for r in mine:  # the safetensors row is that image's embedding and scores
            i = ev.image_ids.index(r["image_id"])
            np.testing.assert_allclose(
                tensors["image_embeddings"][int(r["embedding_row"])], ev.embeddings[i], rtol=1e-6
            )
            np.testing.assert_allclose(
                tensors["triage_logits"][int(r["embedding_row"])], ev.triage[i], rtol=1e-6
            )
            assert float(r["current_score"]) == pytest.approx(scores[i, k], rel=1e-5)
            if model == "zero-shot":  # this evidence carries no baseline zero-shot scores
                assert r["baseline_score"] == ""
            else:
                assert ev.baseline_triage is not None
                assert float(r["baseline_score"]) == pytest.approx(ev.baseline_triage[i, k], rel=1e-5)
    assert len(tensors["image_embeddings"]) == len({r["image_id"] for r in rows})


def test_affected_cases_skip_unknown_labels_and_unknown_findings() -> None:
    ev = evidence()
    cases = affected_cases(ev, FindingFailure("zero-shot", "Mass", 0.8, 0.7, ""))
    assert 0 not in {row for row, _ in cases}  # image 0's Mass label is unknown
    assert affected_cases(ev, FindingFailure("triage", "Hernia", 0.8, 0.7, "")) == []


def test_a_run_that_raises_is_recorded_and_the_schedule_goes_on(tmp_path: Path) -> None:
    def broken() -> GateOutcome:
        raise OSError("image nih/x.png unreadable")

    clock = FakeClock()
    sched = ValidationScheduler(
        config(tmp_path, 2),
        gate=scripted(broken, passing),
        clock=clock,
        sleep=clock.sleep,
        echo=lambda s: None,
    )
    assert sched.run() == 0
    first, second = history(tmp_path)
    assert first["exit_code"] == 4 and "unreadable" in first["exit_reason"] and second["exit_code"] == 0


def _metrics(m: ValidationMetrics) -> dict[tuple[str, tuple], float]:
    reg = CollectorRegistry()
    reg.register(m)
    out = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_after_a_failed_then_a_passing_run(tmp_path: Path) -> None:
    clock = FakeClock()
    metrics = ValidationMetrics(clock.t, 24 * HOUR)
    before = _metrics(metrics)
    assert before == {("radclip_validate_interval_seconds", ()): 24 * HOUR,
                      ("radclip_validate_last_compared_timestamp_seconds", ()): clock.t}  # fmt: skip
    sched = ValidationScheduler(
        config(tmp_path, 1),
        gate=scripted(failing, passing),
        clock=clock,
        sleep=clock.sleep,
        echo=lambda s: None,
        metrics=metrics,
    )
    sched.run()
    m = _metrics(metrics)
    assert m[("radclip_validate_passed", ())] == 0 and m[("radclip_validate_exit_code", ())] == 1
    assert m[("radclip_validate_failed_findings", ())] == 2
    assert m[("radclip_validate_interval_seconds", ())] == 4 * HOUR
    assert m[("radclip_validate_drift", (("kind", "concept"),))] == 1
    assert m[("radclip_validate_auc_drop", (("finding", "Effusion"), ("model", "triage")))] == pytest.approx(
        0.10
    )
    assert not [
        k for k in m if k[0] == "radclip_validate_auc_drop" and ("finding", "Mass") in k[1]
    ]  # no AUC: no drop value
    assert m[("radclip_validate_last_run_timestamp_seconds", ())] == clock.t
    sched.cfg.max_runs = 2
    clock.t += 10
    sched.run()
    m = _metrics(metrics)
    assert m[("radclip_validate_passed", ())] == 1 and m[("radclip_validate_failed_findings", ())] == 0
    assert (
        m[("radclip_validate_interval_seconds", ())] == 24 * HOUR
        and m[("radclip_validate_drift", (("kind", "concept"),))] == 0
    )
    assert m[("radclip_validate_last_compared_timestamp_seconds", ())] == clock.t


def test_metrics_stale_clock_ignores_runs_that_compared_nothing(tmp_path: Path) -> None:
    clock = FakeClock()
    metrics = ValidationMetrics(clock.t, 24 * HOUR)
    start = clock.t
    clock.t += 100
    ValidationScheduler(
        config(tmp_path, 1),
        gate=scripted(other_data),
        clock=clock,
        sleep=clock.sleep,
        echo=lambda s: None,
        metrics=metrics,
    ).run()
    m = _metrics(metrics)
    assert (
        m[("radclip_validate_last_compared_timestamp_seconds", ())] == start
    )  # still the start: RadclipValidationStale counts from it
    assert m[("radclip_validate_last_run_timestamp_seconds", ())] == start + 100
    assert m[("radclip_validate_exit_code", ())] == 3


def test_failing_findings_are_read_from_the_gates_auc_rows() -> None:
    from radclip.eval.gate import DiffRow, GateResult

    result = GateResult(rows=[DiffRow("triage AUC Effusion", 0.8, 0.7, "FAIL", "drop"), DiffRow("zero-shot AUC Mass", 0.7, None, "FAIL", "missing"),
                              DiffRow("triage AUC Nodule", 0.7, 0.71, "ok"), DiffRow("fairness flag x", 0.1, 0.2, "FAIL", "new flag")])  # fmt: skip
    got = [(f.model, f.finding, f.drop) for f in failing_findings(result)]
    assert got == [("triage", "Effusion", pytest.approx(0.1)), ("zero-shot", "Mass", None)]


def test_config_refuses_test_split_and_a_longer_drift_interval(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="test split"):
        GateConfig(baseline=tmp_path / "b.json", manifest=tmp_path / "m.csv", split="test")
    gate = GateConfig(baseline=tmp_path / "b.json", manifest=tmp_path / "m.csv")
    with pytest.raises(ValueError, match="more often"):
        ScheduleConfig(
            gate=gate,
            history=tmp_path / "h",
            review_dir=tmp_path / "r",
            interval_s=HOUR,
            drift_interval_s=2 * HOUR,
        )
