"""``radclip monitor validate-schedule``: the release gate on a labelled set, on a schedule (concept drift; never retrains)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from radclip.lifecycle.validation_gate import GateConfig
    from radclip.lifecycle.validation_schedule import ScheduleConfig

HELP = "run 'radclip validate' on a labelled set on a schedule, more often on drift; history, /metrics and a review log (never retrains)"
DEFAULT_METRICS_PORT = 9465


def _hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give hours as a number, e.g. 24 or 0.5") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: hours must be > 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help="manifest CSV of the labelled set (default: $RADCLIP_DATA_ROOT/cxr/manifest.csv)",
    )
    parser.add_argument(
        "--images-root",
        type=Path,
        default=None,
        help="folder the manifest paths are relative to (default: the manifest's folder)",
    )
    parser.add_argument(
        "--split",
        default="val",
        help="manifest split to validate on (default val; 'test' is refused: it is the release gate's)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="gate block of the production models on this set (default RADCLIP_HOME/validation/baseline-<split>.json; see --write-baseline)",
    )
    parser.add_argument(
        "--write-baseline",
        action="store_true",
        help="compute the baseline with the configured models, write it to --baseline and exit",
    )
    parser.add_argument(
        "--force", action="store_true", help="with --write-baseline: replace an existing baseline"
    )
    parser.add_argument(
        "--triage-model", default=None, help="triage model name or path (default: settings.triage_model)"
    )
    parser.add_argument(
        "--clip-model", default=None, help="image-text model name or path (default: settings.clip_model)"
    )
    parser.add_argument(
        "--interval-hours", type=_hours, default=24.0, help="hours between runs without drift (default 24)"
    )
    parser.add_argument(
        "--drift-interval-hours",
        type=_hours,
        default=4.0,
        help="hours between runs while drift is present (default 4)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=300.0,
        help="how often the service's embedding drift is read while waiting",
    )
    parser.add_argument(
        "--service-url",
        default=None,
        help="a running radclip (e.g. http://127.0.0.1:8000) whose /readyz drift block is read",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="one run, then exit with its code (0 pass, 1 fail, 2 bad baseline, 3 other data, 4 error)",
    )
    parser.add_argument(
        "--max-runs", type=int, default=None, help="stop after this many runs (default: until stopped)"
    )
    parser.add_argument(
        "--history",
        type=Path,
        default=None,
        help="JSONL history (default RADCLIP_HOME/validation/history.jsonl)",
    )
    parser.add_argument(
        "--review-dir",
        type=Path,
        default=None,
        help="review logs of failed runs (default RADCLIP_HOME/validation/review)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=DEFAULT_METRICS_PORT,
        help=f"Prometheus /metrics port (default {DEFAULT_METRICS_PORT}; 0 = none)",
    )
    parser.add_argument(
        "--metrics-addr", default="127.0.0.1", help="address /metrics binds to (default loopback)"
    )
    parser.add_argument(
        "--max-auc-drop", type=float, default=0.02, help="largest allowed AUC drop per measurable finding"
    )
    parser.add_argument(
        "--n-boot", type=int, default=300, help="patient-bootstrap resamples for the block's CIs"
    )
    parser.add_argument(
        "--n-boot-diff", type=int, default=1000, help="paired resamples for each AUC drop's CI"
    )


def _configs(args: argparse.Namespace) -> tuple[GateConfig, ScheduleConfig]:
    from radclip.lifecycle.validation_gate import GateConfig
    from radclip.lifecycle.validation_schedule import HOUR, ScheduleConfig
    from radclip.settings import get_settings

    home = get_settings().home / "validation"
    gate = GateConfig(baseline=args.baseline or home / f"baseline-{args.split}.json",
                      manifest=args.manifest or get_settings().cxr_root / "manifest.csv", images_root=args.images_root,
                      split=args.split, triage_model=args.triage_model, clip_model=args.clip_model,
                      max_auc_drop=args.max_auc_drop, n_boot=args.n_boot, n_boot_diff=args.n_boot_diff)  # fmt: skip
    schedule = ScheduleConfig(gate=gate, history=args.history or home / "history.jsonl", review_dir=args.review_dir or home / "review",
                              interval_s=args.interval_hours * HOUR, drift_interval_s=args.drift_interval_hours * HOUR,
                              poll_s=args.poll_seconds, max_runs=1 if args.once else args.max_runs, service_url=args.service_url)  # fmt: skip
    return gate, schedule


def run(args: argparse.Namespace) -> int:
    import time

    from radclip.lifecycle.validation_gate import write_baseline
    from radclip.lifecycle.validation_schedule import (
        ValidationMetrics,
        ValidationScheduler,
        next_interval,
        resume_state,
    )

    try:
        gate, schedule = _configs(args)
    except ValueError as exc:
        print(f"radclip monitor validate-schedule: {exc}", file=sys.stderr)
        return 2
    if args.write_baseline:
        try:
            block = write_baseline(gate, force=args.force)
        except (FileExistsError, FileNotFoundError, ValueError) as exc:
            print(f"radclip monitor validate-schedule: {exc}", file=sys.stderr)
            return 2
        print(
            f"wrote baseline {gate.baseline} (split {block['split']}, {block['n_images']} images, data {block['data_snapshot']})"
        )
        return 0
    # a restart keeps the concept-drift state and the stale clock
    concept_drift, last_compared = resume_state(schedule.history)
    metrics = ValidationMetrics(time.time(), next_interval(schedule, concept_drift, False), last_compared)
    if args.metrics_port:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=True)
        registry.register(metrics)
        start_http_server(args.metrics_port, addr=args.metrics_addr, registry=registry)
        print(f"metrics on http://{args.metrics_addr}:{args.metrics_port}/metrics")
    scheduler = ValidationScheduler(schedule, metrics=metrics, concept_drift=concept_drift)
    try:
        return scheduler.run()
    except KeyboardInterrupt:
        print(f"stopped after {scheduler.runs} run(s); history in {schedule.history}")
        return 0
