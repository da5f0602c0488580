"""Concept drift: run the release gate on a labelled set on a schedule, more often while drift is present.

Each run calls the gate of ``radclip validate`` (:func:`radclip.lifecycle.validation_gate.run_gate`),
appends one line to a JSONL history, updates its Prometheus metrics and, when the gate fails on
findings, writes the review log (:mod:`radclip.lifecycle.validation_review`).

**Drift is present** when the last run that compared failed (concept drift), or when the service's
embedding drift (``/readyz`` → ``drift``) is active and above its threshold. Then the next run comes
after ``drift_interval_s`` instead of ``interval_s``; while waiting, the service is read every
``poll_s``, so embedding drift that starts mid-wait brings the next run forward. The interval returns
to normal after a passing run with no embedding drift.

The model is **never** retrained here (regulatory constraint): this module and everything it calls
stay clear of :mod:`radclip.train` (tested in a subprocess).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from radclip.lifecycle.validation_gate import EXIT_ERROR, GateConfig, GateOutcome, run_gate
from radclip.lifecycle.validation_review import write_review

log = logging.getLogger(__name__)
HOUR = 3600.0


@dataclass
class ScheduleConfig:
    """When to validate, and where the results go."""

    gate: GateConfig  # what each run evaluates
    history: Path  # append-only JSONL, one line per run
    review_dir: Path  # review folders of failed runs (one sub-folder per run)
    interval_s: float = 24 * HOUR  # between runs without drift
    drift_interval_s: float = 4 * HOUR  # between runs while drift is present (concept or embedding)
    poll_s: float = 300.0  # how often the service's embedding drift is read while waiting
    max_runs: int | None = None  # stop after this many runs (1 = one-shot); None = run until stopped
    service_url: str | None = None  # a radclip whose /readyz drift block is read; None = no embedding drift

    def __post_init__(self) -> None:
        if not 0 < self.drift_interval_s <= self.interval_s:
            raise ValueError(f"intervals: need 0 < drift interval ({self.drift_interval_s} s) <= interval ({self.interval_s} s); "
                             "on drift the schedule runs more often, not less")  # fmt: skip
        if self.poll_s <= 0:
            raise ValueError(f"poll interval must be > 0 s, got {self.poll_s}")
        if self.max_runs is not None and self.max_runs < 1:
            raise ValueError(f"max runs must be >= 1 (or unset to run until stopped), got {self.max_runs}")


@dataclass
class EmbeddingDrift:
    """The service's embedding drift as read from ``/readyz``."""

    state: str  # "active" | "filling" | "unavailable" (the service's words) | "unreachable" | "not watched"
    cosine_distance: float | None = None
    alert_above: float | None = None

    @property
    def drifting(self) -> bool:
        return (
            self.state == "active"
            and self.cosine_distance is not None
            and self.alert_above is not None
            and self.cosine_distance > self.alert_above
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "cosine_distance": self.cosine_distance,
            "alert_above": self.alert_above,
            "drifting": self.drifting,
        }


def read_service_drift(url: str, timeout_s: float = 10.0) -> EmbeddingDrift:
    """The ``drift`` block of ``url``/readyz (public); "unreachable" when the service does not answer with one."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/readyz", timeout=timeout_s) as resp:  # noqa: S310 (operator's URL)
            body = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.warning("embedding drift: %s/readyz did not answer (%s); treated as no drift", url, exc)
        return EmbeddingDrift("unreachable")
    block = body.get("drift") if isinstance(body, dict) else None
    if not isinstance(block, dict):
        return EmbeddingDrift("unreachable")
    num = [
        block.get(k) if isinstance(block.get(k), int | float) else None
        for k in ("cosine_distance", "alert_above")
    ]
    return EmbeddingDrift(str(block.get("state", "unavailable")), num[0], num[1])


def resume_state(history: Path) -> tuple[bool, float | None]:
    """(concept drift, end of the last run that compared) from an existing history: a restart keeps both."""
    last: dict[str, Any] | None = None
    if history.is_file():
        for line in history.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a crash: skip it
                continue
            if isinstance(record, dict) and record.get("exit_code") in (0, 1):
                last = record
    if last is None:
        return False, None
    return last["exit_code"] == 1, float(last["timestamp"]) + float(last.get("duration_s") or 0.0)


def append_line(path: Path, line: str) -> None:
    """Append one line; a last line cut short by a crash is ended first, so it cannot swallow this one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as fh:
        fh.seek(0, 2)
        if fh.tell() > 0:
            fh.seek(-1, 2)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
        fh.write(line.encode() + b"\n")
        fh.flush()


def next_interval(cfg: ScheduleConfig, concept_drift: bool, embedding_drift: bool) -> float:
    """Seconds from one run's start to the next: shorter while either kind of drift is present."""
    return cfg.drift_interval_s if concept_drift or embedding_drift else cfg.interval_s


@dataclass
class RunRecord:
    """One history line."""

    run: int
    started: float  # epoch s
    duration_s: float
    outcome: GateOutcome
    concept_drift: bool  # the last comparing run failed (after this run)
    embedding: EmbeddingDrift
    next_interval_s: float
    review: Path | None = None

    def to_dict(self, cfg: ScheduleConfig) -> dict[str, Any]:
        o = self.outcome
        return {"time": datetime.fromtimestamp(self.started, UTC).isoformat(timespec="seconds"), "timestamp": round(self.started, 3),
                "run": self.run, "passed": o.passed, "exit_code": o.exit_code, "exit_reason": o.reason, "failures": o.failures,
                "failed_findings": [f.to_dict() for f in o.findings], "review": None if self.review is None else str(self.review),
                "drift": {"concept": self.concept_drift, "embedding": self.embedding.to_dict()}, "next_interval_s": self.next_interval_s,
                "duration_s": round(self.duration_s, 3), "split": cfg.gate.split, "manifest": str(cfg.gate.manifest),
                "baseline": str(cfg.gate.baseline), "models": o.models}  # fmt: skip


class ValidationMetrics(Collector):
    """The scheduler's Prometheus metrics (served on its own port); run metrics appear after the first run."""

    def __init__(self, started: float, interval_s: float, last_compared: float | None = None) -> None:
        self.started, self.interval_s = started, interval_s
        self.last: RunRecord | None = None
        self.last_compared = (
            last_compared  # end of the last run that compared (exit 0/1), e.g. from the history
        )

    def update(self, record: RunRecord) -> None:
        self.last, self.interval_s = record, record.next_interval_s
        if record.outcome.compared:
            self.last_compared = record.started + record.duration_s

    def collect(self) -> Iterator[GaugeMetricFamily]:
        def gauge(
            name: str, doc: str, value: float, labels: dict[str, str] | None = None
        ) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc, labels=list(labels or {}))
            g.add_metric(list((labels or {}).values()), value)
            return g

        yield gauge(
            "radclip_validate_interval_seconds",
            "Seconds between scheduled validations now (shorter while drift is present)",
            self.interval_s,
        )
        yield gauge("radclip_validate_last_compared_timestamp_seconds",
                    "End of the last scheduled validation that compared (exit 0 or 1); the scheduler's start until one has",
                    self.last_compared if self.last_compared is not None else self.started)  # fmt: skip
        r = self.last
        if r is None:
            return
        yield gauge(
            "radclip_validate_last_run_timestamp_seconds",
            "End of the last scheduled validation run",
            r.started + r.duration_s,
        )
        yield gauge(
            "radclip_validate_passed",
            "1 when the last scheduled validation passed the gate, else 0",
            float(r.outcome.passed),
        )
        yield gauge(
            "radclip_validate_exit_code",
            "Exit code of the last run (radclip validate's: 0 pass, 1 fail, 2 bad baseline, 3 other data; 4 error)",
            r.outcome.exit_code,
        )
        yield gauge(
            "radclip_validate_failed_findings",
            "Findings that failed the last run (significant AUC drop or missing)",
            len(r.outcome.findings),
        )
        yield gauge("radclip_validate_run_seconds", "Wall time of the last run", r.duration_s)
        drift = GaugeMetricFamily(
            "radclip_validate_drift", "1 while this kind of drift shortens the interval", labels=["kind"]
        )
        drift.add_metric(["concept"], float(r.concept_drift))
        drift.add_metric(["embedding"], float(r.embedding.drifting))
        yield drift
        drops = GaugeMetricFamily("radclip_validate_auc_drop", "AUC drop (baseline - current) of each finding that failed the last run",
                                  labels=["model", "finding"])  # fmt: skip
        for f in r.outcome.findings:
            if f.drop is not None:
                drops.add_metric([f.model, f.finding], f.drop)
        yield drops


@dataclass
class ValidationScheduler:
    """Runs the gate on a schedule. ``gate``, ``drift_probe``, ``clock`` and ``sleep`` are injectable (tests never sleep)."""

    cfg: ScheduleConfig
    gate: Callable[[GateConfig], GateOutcome] = run_gate
    drift_probe: Callable[[], EmbeddingDrift] | None = None  # None: read cfg.service_url when set
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    echo: Callable[[str], None] = print
    metrics: ValidationMetrics | None = None
    concept_drift: bool = False  # the last comparing run failed
    embedding: EmbeddingDrift = field(default_factory=lambda: EmbeddingDrift("not watched"))
    runs: int = 0

    def probe(self, latch: bool = False) -> EmbeddingDrift:
        """Read the service's embedding drift; with ``latch``, drift seen since the last run is kept (only a run clears it)."""
        if self.drift_probe is not None:
            reading = self.drift_probe()
        elif self.cfg.service_url:
            reading = read_service_drift(self.cfg.service_url)
        else:
            return self.embedding
        if not (latch and self.embedding.drifting and not reading.drifting):
            self.embedding = reading
        return self.embedding

    def interval(self) -> float:
        return next_interval(self.cfg, self.concept_drift, self.embedding.drifting)

    def run_once(self) -> RunRecord:
        """One run: gate, drift state, review log on failure, history line, metrics."""
        started = self.clock()
        try:
            outcome = self.gate(self.cfg.gate)
        # a scheduler outlives one bad run; the history and RadclipValidationStale say so
        except Exception as exc:
            log.exception("scheduled validation run failed")
            outcome = GateOutcome(
                EXIT_ERROR, f"run error: {type(exc).__name__}: {exc}", [f"{type(exc).__name__}: {exc}"]
            )
        duration = self.clock() - started
        self.runs += 1
        if outcome.compared:
            self.concept_drift = not outcome.passed
        self.probe()
        record = RunRecord(
            self.runs, started, duration, outcome, self.concept_drift, self.embedding, self.interval()
        )
        if not outcome.passed and outcome.findings and outcome.evidence is not None:
            stamp = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dT%H%M%SZ")
            folder = self.cfg.review_dir / f"{stamp}-run{self.runs}"
            try:
                record.review = write_review(outcome.evidence, outcome.findings, folder)
            except OSError as exc:  # the verdict still goes to the history and metrics
                log.error("review log %s not written: %s", folder, exc)
                outcome.failures.append(f"review log {folder} not written: {exc}")
        append_line(self.cfg.history, json.dumps(record.to_dict(self.cfg)))
        if self.metrics is not None:
            self.metrics.update(record)
        self.echo(self._summary(record))
        return record

    def _summary(self, r: RunRecord) -> str:
        kinds = [k for k, on in (("concept", r.concept_drift), ("embedding", r.embedding.drifting)) if on]
        lines = [r.outcome.table] if r.outcome.table else []
        lines.append(f"run {r.run}: exit {r.outcome.exit_code} ({r.outcome.reason}) in {r.duration_s:.1f} s; "
                     f"drift: {', '.join(kinds) or 'none'}; next run in {r.next_interval_s:.0f} s"
                     + (f"; review log {r.review}" if r.review else ""))  # fmt: skip
        return "\n".join(lines)

    def wait(self, last_start: float) -> None:
        """Sleep until the next run is due, re-reading embedding drift every poll (drift brings the run forward)."""
        while True:
            due = last_start + self.interval()
            now = self.clock()
            if now >= due:
                return
            self.sleep(min(self.cfg.poll_s, due - now))
            self.probe(latch=True)

    def run(self) -> int:
        """Run until ``max_runs`` (forever when unset); the last run's exit code."""
        record = None
        while self.cfg.max_runs is None or self.runs < self.cfg.max_runs:
            if record is not None:
                self.wait(record.started)
            record = self.run_once()
        assert record is not None
        return record.outcome.exit_code
