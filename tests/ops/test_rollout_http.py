"""End to end through HTTP on a real uvicorn server: candidate -> shadow -> canary 10/25/50 -> production -> rollback.

Two real triage versions answer: the shipped weights and a copy with a changed head. The admin API
changes stages while the server runs; every /screen response names the version that answered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.ops.ops_helpers import SHIPPED, call, png, screen

from radclip.lifecycle.routing import bucket, study_key

N_STUDIES = 24


def answered_by(srv: Any) -> dict[int, str]:
    return {seed: screen(srv, seed)["model_version"]["triage"]["version"] for seed in range(N_STUDIES)}


def test_rollout_through_the_admin_api(server: Any, changed_head_weights: Path) -> None:
    ops = server.app.state.radclip_ops
    listed = call(server, "GET", "/api/v1/models").json()
    v1 = listed["serving"]["production"].split("@")[1]
    assert [v["stage"] for v in listed["versions"]] == ["production"]
    assert call(server, "GET", "/api/v1/models", "reader").status_code == 403  # admin only

    r = call(server, "POST", "/api/v1/models", json={"path": str(changed_head_weights)})
    assert r.status_code == 201, r.text
    v2 = r.json()["changed"][0]["version"]
    assert r.json()["changed"][0]["stage"] == "candidate" and v2 != v1

    # shadow: production still answers everything; the shadow's predictions are logged beside production's
    assert call(server, "POST", f"/api/v1/models/{SHIPPED}@{v2}/shadow").status_code == 200
    assert set(answered_by(server).values()) == {v1}
    ops.shadow.drain()
    logged = ops.shadow.predictions.for_studies([study_key(None, png(0))])
    by_role = {p.role: p for p in logged}
    assert {by_role["production"].model_version, by_role["shadow"].model_version} == {v1, v2}
    diff = max(
        abs(by_role["production"].scores[k] - by_role["shadow"].scores[k]) for k in by_role["shadow"].scores
    )
    assert diff > 0.01  # the changed head predicts differently: two real versions ran

    # canary 10 -> 25 -> 50: exactly the studies whose stable bucket falls under P answer with v2
    for pct in (10, 25, 50):
        r = call(server, "POST", f"/api/v1/models/{SHIPPED}@{v2}/canary", json={"percent": pct})
        assert r.status_code == 200 and r.json()["serving"]["canary"]["percent"] == pct
        expected = {s: (v2 if bucket(study_key(None, png(s))) < pct else v1) for s in range(N_STUDIES)}
        assert answered_by(server) == expected
    assert 0 < sum(v == v2 for v in expected.values()) < N_STUDIES  # both versions really answered at 50%

    r = call(server, "POST", f"/api/v1/models/{SHIPPED}/promote", json={"reason": "canary review passed"})
    assert r.status_code == 200 and r.json()["serving"]["production"] == f"{SHIPPED}@{v2}"
    assert set(answered_by(server).values()) == {v2}

    r = call(server, "POST", f"/api/v1/models/{SHIPPED}/rollback")
    assert r.status_code == 200 and r.json()["serving"]["production"] == f"{SHIPPED}@{v1}"
    assert set(answered_by(server).values()) == {v1}

    events = call(server, "GET", "/api/v1/models/history").json()["events"]
    assert [(e["to"], e["actor"]) for e in events[-3:]] == [("production", "ops-admin"), ("retired", "ops-admin"),
                                                            ("production", "ops-admin")]  # fmt: skip
    assert events[0]["actor"] == "service-start"


def test_refusals_are_problems(server: Any, tmp_path: Path) -> None:
    r = call(server, "POST", f"/api/v1/models/{SHIPPED}@nope/canary", json={"percent": 10})
    assert r.status_code == 404 and "no registered model" in r.json()["detail"]
    r = call(server, "POST", f"/api/v1/models/{SHIPPED}@x/canary", json={"percent": 150})
    assert r.status_code == 422
    r = call(server, "POST", "/api/v1/models", json={"path": str(tmp_path / "missing.safetensors")})
    assert r.status_code == 404 and "no model card" in r.json()["detail"]


def test_shadow_failure_never_changes_a_response(server: Any, changed_head_weights: Path) -> None:
    ops = server.app.state.radclip_ops
    before = screen(server, 1000)
    v2 = next(
        v["version"]
        for v in call(server, "GET", "/api/v1/models").json()["versions"]
        if v["stage"] == "retired"
    )
    assert call(server, "POST", f"/api/v1/models/{SHIPPED}@{v2}/shadow").status_code == 200
    shadow = ops.lifecycle.deployment.shadow
    assert shadow is not None and shadow.ref.endswith(v2)

    def broken(_: Any) -> Any:
        raise RuntimeError("shadow model crashed")

    shadow.runner.run = broken  # the shadow's own instance; production's runner is another object
    failed = ops.shadow.outcomes["failed"]
    after = screen(server, 1000)
    ops.shadow.drain()
    assert ops.shadow.outcomes["failed"] == failed + 1
    assert (
        after["triage"] == before["triage"]
        and after["model_version"]["triage"] == before["model_version"]["triage"]
    )
    del shadow.runner.run
    call(server, "POST", f"/api/v1/models/{SHIPPED}/rollback")
