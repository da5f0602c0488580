"""The shadow worker keeps heat maps only when more than one version scored the study, and from the answer's own result."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from radclip.lifecycle.review_store import NotStored, ReviewStore, ReviewStoreConfig
from radclip.lifecycle.routing import Choice, Served
from radclip.lifecycle.shadow import ShadowWorker

LABELS = ("Effusion", "Mass")


@dataclass
class Result:
    labels: tuple[str, ...]
    probs: np.ndarray
    features: np.ndarray  # (K, S, S) maps: what this fake's cam() reads


class Runner:
    """Scores and maps from a fixed map per label; ``runs`` counts forward passes."""

    def __init__(self, sign: float) -> None:
        self.sign, self.runs = sign, 0

    def run(self, contract: np.ndarray) -> Result:
        self.runs += 1
        ramp = np.outer(np.linspace(0, 1, contract.shape[-1]), np.ones(contract.shape[-1]))
        maps = np.stack([ramp, ramp.T]) if self.sign > 0 else np.stack([1 - ramp, 1 - ramp.T])
        return Result(LABELS, np.array([0.9, 0.1]) if self.sign > 0 else np.array([0.1, 0.9]), maps)

    def cam(self, result: Result, label: str) -> np.ndarray:
        return result.features[LABELS.index(label)]


class Log:
    def __init__(self) -> None:
        self.rows: list[Any] = []

    def record(self, rows: list[Any]) -> None:
        self.rows += rows


def _worker(tmp_path: Path) -> tuple[ShadowWorker, ReviewStore]:
    store = ReviewStore(tmp_path, ReviewStoreConfig(map_size=8, thumb_size=16))
    return ShadowWorker(Log(), review=store), store  # type: ignore[arg-type]


def test_two_versions_keep_both_maps_and_production_is_not_run_again(tmp_path: Path) -> None:
    worker, store = _worker(tmp_path)
    prod, shadow = Runner(1), Runner(-1)
    contract = np.random.default_rng(0).random((1, 32, 32))
    answer = prod.run(contract)
    choice = Choice(
        Served("m@1", "production", prod),
        Served("m@2", "shadow", shadow),
        "k1",
        Served("m@1", "production", prod),
    )
    worker.submit(choice, contract, answer)
    worker.drain()
    assert worker.outcomes == {"ok": 1, "failed": 0, "dropped": 0}
    assert prod.runs == 1 and shadow.runs == 1  # production's maps came from the request's result
    kept = store.load("k1")
    assert kept.refs == ("m@1", "m@2") and kept.labels == LABELS
    assert np.abs(kept.maps[0].astype(int) + kept.maps[1].astype(int) - 255).max() <= 1
    worker.close()


def test_production_alone_or_a_failed_shadow_keeps_nothing(tmp_path: Path) -> None:
    worker, store = _worker(tmp_path)
    prod, shadow = Runner(1), Runner(-1)
    contract = np.zeros((1, 32, 32))
    alone = Served("m@1", "production", prod)
    worker.submit(Choice(alone, None, "k-alone", alone), contract, prod.run(contract))

    def broken(_: Any) -> Any:
        raise RuntimeError("shadow crashed")

    shadow.run = broken  # type: ignore[method-assign]
    worker.submit(
        Choice(alone, Served("m@2", "shadow", shadow), "k-broken", alone), contract, prod.run(contract)
    )
    worker.drain()
    assert worker.outcomes == {"ok": 1, "failed": 1, "dropped": 0}
    assert [r.study_key for r in worker.predictions.rows] == [
        "k-alone",
        "k-broken",
    ]  # the answers are still logged
    for key in ("k-alone", "k-broken"):
        with pytest.raises(NotStored):
            store.load(key)
    worker.close()
