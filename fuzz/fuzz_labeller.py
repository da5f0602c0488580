"""Fuzz the report labeller: any text gives one state per label in {1, 0, -1, NaN}; it has no error to raise."""

from __future__ import annotations

import math

import harness_contract as contract

from radclip.io.labeller import REPORT_LABELS, label_report

ALLOWED_STATES = {1.0, 0.0, -1.0}


def _target(data: bytes) -> dict[str, float]:
    labels = label_report(data.decode("utf-8", "replace"))
    bad = {
        k: v
        for k, v in labels.items()
        if not (isinstance(v, float) and (math.isnan(v) or v in ALLOWED_STATES))
    }
    if set(labels) != set(REPORT_LABELS):
        raise contract.Finding(f"labels {sorted(labels)} are not REPORT_LABELS")
    if bad:
        raise contract.Finding(f"label states outside 1/0/-1/NaN: {bad}")
    return labels


def one_input(data: bytes) -> None:
    contract.check(_target, data, ())


if __name__ == "__main__":
    contract.run(one_input)
