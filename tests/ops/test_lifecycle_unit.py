"""The lifecycle without HTTP: stable canary buckets, consistent snapshots under concurrent stage changes, the rollback rule."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from tests.ops.test_model_stages import fake_version

from radclip.engine import db
from radclip.engine.model_stages import ModelStages
from radclip.lifecycle.deployment import ModelLifecycle
from radclip.lifecycle.feedback_monitor import MIN_LIVE_PATIENTS, drop_verdict
from radclip.lifecycle.routing import bucket, study_key


def test_bucket_is_stable_and_uniform() -> None:
    assert bucket("uid:1.2.3") == bucket("uid:1.2.3")  # sha256, not Python's per-process salted hash
    assert round(bucket("uid:1.2.3"), 6) == round(
        int.from_bytes(__import__("hashlib").sha256(b"uid:1.2.3").digest()[:8], "big") / 2**64 * 100, 6
    )
    share = np.mean([bucket(f"uid:1.2.{i}") < 25 for i in range(4000)])
    assert abs(share - 0.25) < 0.03
    assert study_key(" 1.2.3 ", b"x") == "uid:1.2.3" and study_key(None, b"x").startswith("sha256:2d711642")


def _runner(info: Any) -> Any:
    return SimpleNamespace(card=SimpleNamespace(name=info.name, version=info.version), sha=info.sha256)


def test_snapshots_stay_consistent_while_stages_change(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'l.db'}")
    db.migrate(engine)
    stages = ModelStages(engine)
    stages.register(fake_version(tmp_path, "1", b"one"), "t", "production")
    stages.register(fake_version(tmp_path, "2", b"two"), "t")
    configured = SimpleNamespace(card=SimpleNamespace(name="tri", version="1"))
    lc = ModelLifecycle(stages, "tri", configured, None, loader=_runner, poll_s=0.0)
    assert lc.deployment.production.ref == "tri@1" and lc.deployment.canary is None
    seen, stop, errors = set(), threading.Event(), []

    def reader() -> None:
        while not stop.is_set():
            dep = lc.deployment
            c = dep.choose("uid:9.9")
            if dep.canary is None and c.answer.ref != "tri@1":
                errors.append(("no canary, but answered by", c.answer.ref))
            if c.answer.ref != f"{c.answer.runner.card.name}@{c.answer.runner.card.version}":
                errors.append(("runner and ref disagree", c.answer.ref))
            seen.add(c.answer.ref)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(5):
        stages.canary("tri@2", 99, "t")
        lc.choose("uid:x")  # poll_s=0: the next request picks the change up
        stages.rollback("tri", "t")
        lc.choose("uid:x")
    stop.set()
    for t in threads:
        t.join()
    assert not errors and seen <= {"tri@1", "tri@2"}
    assert lc.deployment.canary is None and lc.deployment.production.ref == "tri@1"


def test_rollback_rule_fires_only_on_a_real_drop_with_enough_patients() -> None:
    rng = np.random.default_rng(0)
    n = 200
    y = (rng.random(n) < 0.3).astype(float)
    production = y + rng.normal(0, 0.5, n)  # AUC ~0.9
    groups = np.array([f"p{i}" for i in range(n)])
    worse = y + rng.normal(0, 1.5, n)  # AUC ~0.7
    fired = drop_verdict(y, production, worse, groups, n_boot=300)
    assert fired is not None and fired["diff"] > 0.02 and fired["ci_low"] > 0
    same = production + rng.normal(0, 0.01, n)
    assert drop_verdict(y, production, same, groups, n_boot=300) is None
    few = np.zeros(n)
    few[: MIN_LIVE_PATIENTS - 1] = 1  # one positive patient short of the minimum
    assert drop_verdict(few, few + rng.normal(0, 0.1, n), rng.random(n), groups, n_boot=300) is None


@pytest.mark.parametrize("unknown", [np.nan])
def test_unknown_labels_are_ignored(unknown: float) -> None:
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(30), np.zeros(30), np.full(20, unknown)]
    p = np.r_[np.ones(30), np.zeros(30), rng.random(20)]
    c = np.r_[np.zeros(30), np.ones(30), rng.random(20)]  # reversed ranking on the known rows
    fired = drop_verdict(y, p, c, np.array([f"p{i}" for i in range(80)]), n_boot=200)
    assert fired is not None and fired["n_pos"] == 30 and fired["n_neg"] == 30 and fired["auc_a"] == 1.0
