"""Turn libFuzzer logs (scripts/fuzz.sh output) into benchmarks/results/fuzz.json: executions, exec/s, cov/ft, crashes.

Usage: python fuzz/summarise.py LOG [LOG ...] [--out benchmarks/results/fuzz.json] [--note TEXT]. A log's file
name starts with its harness (``load_image.1.log``); a later log of the same harness is recorded as a later run.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

_STATUS = re.compile(
    rb"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/\S+ .*?exec/s: (\d+) rss: (\d+)Mb", re.M
)
_STAT = re.compile(rb"^stat::(\w+):\s+(\d+)", re.M)
_DONE = re.compile(rb"^Done (\d+) runs in (\d+) second", re.M)
_CRASH = re.compile(rb"Test unit written to (\S+)")
_UNCAUGHT = re.compile(rb"=== Uncaught Python exception: ===\n(.+?)\n", re.S)


def summarise(log: Path) -> dict[str, object]:
    text = log.read_bytes()
    status = _STATUS.findall(text)
    stats = {k.decode(): int(v) for k, v in _STAT.findall(text)}
    done = _DONE.search(text)
    crash = _CRASH.search(text)
    uncaught = _UNCAUGHT.search(text)
    last = status[-1] if status else None
    return {
        "harness": log.name.split(".")[0],
        "log": log.name,
        "executions": stats.get("number_of_executed_units", int(last[0]) if last else 0),
        "seconds": int(done.group(2)) if done else None,
        "exec_per_s": stats.get("average_exec_per_sec", int(last[4]) if last else 0),
        "cov": int(last[1]) if last else None,
        "ft": int(last[2]) if last else None,
        "corpus_units": int(last[3]) if last else None,
        "peak_rss_mb": stats.get("peak_rss_mb", int(last[5]) if last else None),
        "slowest_unit_s": stats.get("slowest_unit_time_sec"),
        "crash_artifact": crash.group(1).decode() if crash else None,
        "crash": uncaught.group(1).decode("utf-8", "replace").strip()[:300] if uncaught else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fuzz.json"))
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    runs = [summarise(log) for log in sorted(args.logs, key=lambda p: p.name)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"note": args.note, "runs": runs}, indent=2) + "\n")
    for run in runs:
        print(
            f"{run['log']}: {run['executions']:,} execs, {run['exec_per_s']}/s, cov {run['cov']} ft {run['ft']}, crash: {run['crash'] or '-'}"
        )


if __name__ == "__main__":
    main()
