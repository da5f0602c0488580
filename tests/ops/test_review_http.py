"""The discordance review queue through HTTP: a shadow with a negated head beside production, and a reader's verdict."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tests.ops.ops_helpers import SHIPPED, call, png, screen

N = 12


def test_review_lists_the_studies_where_shadow_or_feedback_disagree(
    server: Any, discordant_head_weights: Path
) -> None:
    from radclip.integrations.operating_points import triage_operating_points

    ops = server.app.state.radclip_ops
    v2 = call(server, "POST", "/api/v1/models", json={"path": str(discordant_head_weights)}).json()[
        "changed"
    ][0]["version"]
    assert call(server, "POST", f"/api/v1/models/{SHIPPED}@{v2}/shadow").status_code == 200
    seeds = range(5000, 5000 + N)
    for seed in seeds:
        screen(server, seed)
    ops.shadow.drain()
    runner = ops.lifecycle.deployment.production.runner
    t = triage_operating_points(tuple(runner.labels), runner.card.calibration)
    keys = [f"sha256:{hashlib.sha256(png(s)).hexdigest()}" for s in seeds]
    logged = {(p.study_key, p.role): p.scores for p in ops.shadow.predictions.for_studies(keys)}
    flips = {
        k
        for k in keys
        if any((logged[k, "production"][f] >= t[f]) != (logged[k, "shadow"][f] >= t[f]) for f in t)
    }
    assert flips, "the negated head should flip some finding on some study"

    r = call(server, "GET", "/api/v1/review/discordant?limit=1000", "reader")
    assert r.status_code == 200, r.text
    listed = {s["study_key"]: s for s in r.json()["discordant"]}
    assert {k for k in listed if k in keys} == flips
    # with the shadow retired, a study has production's call only; a reader disagreeing with it joins the queue
    assert call(server, "POST", f"/api/v1/models/{SHIPPED}/rollback").status_code == 200
    screen(server, 6000)
    ops.shadow.drain()
    key = f"sha256:{hashlib.sha256(png(6000)).hexdigest()}"
    (alone,) = ops.shadow.predictions.for_studies([key])
    finding = runner.labels[0]
    verdict = not (alone.scores[finding] >= t[finding])
    body = {"upload_sha256": key.removeprefix("sha256:"), "findings": {finding: verdict}}
    assert call(server, "POST", "/api/v1/feedback", "reader", json=body).status_code == 201
    after = {
        s["study_key"]: s
        for s in call(server, "GET", "/api/v1/review/discordant", "reader").json()["discordant"]
    }
    (f,) = after[key]["findings"]
    assert f["finding"] == finding and f["kinds"] == ["feedback"] and f["feedback"] is verdict
    assert [c["role"] for c in f["calls"]] == ["production"]
    assert call(server, "GET", "/api/v1/review/discordant?limit=0", "reader").status_code == 422
