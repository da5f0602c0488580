"""Helpers of the scheduled-validation tests: a clock that never sleeps, scripted gate outcomes, synthetic evidence."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from radclip.lifecycle.validation_gate import GateConfig, GateOutcome
from radclip.lifecycle.validation_review import FindingFailure, ReviewEvidence
from radclip.lifecycle.validation_schedule import HOUR, ScheduleConfig

NAMES = ["Effusion", "Mass", "Nodule"]


class FakeClock:
    """time.time / time.sleep that never sleep: sleeping moves the clock."""

    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t, self.sleeps = t, []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


def evidence(n: int = 20, seed: int = 0) -> ReviewEvidence:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, len(NAMES))) < 0.3).astype(np.float64)
    labels[0, 1] = np.nan  # one unknown label: neither positive nor negative
    emb = rng.normal(size=(n, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return ReviewEvidence(names=NAMES, image_ids=[f"img{i}" for i in range(n)], patients=[f"p{i // 2}" for i in range(n)],
                          paths=[f"nih/img{i}.png" for i in range(n)], labels=labels, triage=rng.normal(size=(n, 3)),
                          zeroshot=rng.normal(size=(n, 3)), embeddings=emb, baseline_triage=rng.normal(size=(n, 3)))  # fmt: skip


def passing() -> GateOutcome:
    return GateOutcome(0, "passed", evidence=evidence())


def failing() -> GateOutcome:
    findings = [
        FindingFailure("triage", "Effusion", 0.80, 0.70, "drop +0.100"),
        FindingFailure("zero-shot", "Mass", 0.75, None, "missing"),
    ]
    return GateOutcome(
        1,
        "gate failed: ...",
        ["triage AUC Effusion dropped", "zero-shot AUC Mass missing"],
        findings,
        evidence=evidence(),
    )


def other_data() -> GateOutcome:
    return GateOutcome(3, "other data: snapshot differs", ["snapshot differs"])


def scripted(*outcomes: Callable[[], GateOutcome]) -> Callable[[GateConfig], GateOutcome]:
    it: Iterator[Callable[[], GateOutcome]] = iter(outcomes)
    return lambda cfg: next(it)()


def config(tmp_path: Path, runs: int, **kw: object) -> ScheduleConfig:
    gate = GateConfig(baseline=tmp_path / "baseline.json", manifest=tmp_path / "manifest.csv")
    return ScheduleConfig(gate=gate, history=tmp_path / "history.jsonl", review_dir=tmp_path / "review", interval_s=24 * HOUR,
                          drift_interval_s=4 * HOUR, poll_s=HOUR, max_runs=runs, **kw)  # type: ignore[arg-type]  # fmt: skip


def history(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]


def starts(lines: list[dict]) -> list[float]:
    return [(b["timestamp"] - a["timestamp"]) / HOUR for a, b in zip(lines, lines[1:], strict=False)]
