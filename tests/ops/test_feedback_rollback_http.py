"""Feedback through HTTP: validation, idempotency per (study, reader), live AUC, and the automatic rollback.

Labels come from production's own scores (positive above its median Effusion score), so production's
live AUC is 1 and the noisy-head canary's is lower: the rule must fire, retire the canary, name the
condition in the stage history and on /metrics, and production must answer every study afterwards.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
from tests.ops.ops_helpers import SHIPPED, call, png, screen

from radclip.lifecycle.feedback_monitor import MIN_LIVE_PATIENTS
from radclip.lifecycle.routing import study_key

N_STUDIES = 64


def post(server: Any, body: dict[str, Any], role: str = "reader") -> Any:
    return call(server, "POST", "/api/v1/feedback", role, json=body)


def test_feedback_is_validated_and_idempotent(server: Any) -> None:
    sha = hashlib.sha256(png(9000)).hexdigest()
    r = post(server, {"upload_sha256": sha, "findings": {"Efusion": True}})
    assert r.status_code == 422 and "did you mean 'Effusion'" in r.json()["detail"]
    r = post(server, {"upload_sha256": sha, "study_instance_uid": "1.2.3", "findings": {"Effusion": True}})
    assert r.status_code == 422 and "exactly one" in r.json()["detail"]
    assert post(server, {"upload_sha256": "xyz", "findings": {"Effusion": True}}).status_code == 422
    assert post(server, {"upload_sha256": sha, "findings": {}}).status_code == 422
    first = post(server, {"upload_sha256": sha, "findings": {"effusion": True, "Mass": False}})
    assert first.status_code == 201 and first.json()["status"] == "created"
    assert first.json()["findings"] == {"Effusion": True, "Mass": False}
    again = post(server, {"upload_sha256": sha, "findings": {"Effusion": True, "Mass": False}})
    assert again.status_code == 200 and again.json()["status"] == "unchanged"
    changed = post(server, {"upload_sha256": sha, "findings": {"Effusion": False}})
    assert changed.status_code == 200 and changed.json()["status"] == "updated"
    other_reader = post(server, {"upload_sha256": sha, "findings": {"Effusion": True}}, role="admin")
    assert other_reader.json()["status"] == "created"  # one record per (study, reader)
    labels = server.app.state.radclip_ops.feedback.window(10)
    assert labels.study_keys == [f"sha256:{sha}"]
    assert np.isnan(labels.labels[0, labels.names.index("Effusion")])  # 1 vs 1 reader: a tie is unknown


def test_auc_drop_rolls_the_canary_back(server: Any, changed_head_weights: Path) -> None:
    ops = server.app.state.radclip_ops
    v2 = call(server, "POST", "/api/v1/models", json={"path": str(changed_head_weights)}).json()["changed"][
        0
    ]["version"]
    assert (
        call(server, "POST", f"/api/v1/models/{SHIPPED}@{v2}/canary", json={"percent": 50}).status_code == 200
    )
    prod_ref, cand_ref = ops.lifecycle.deployment.production.ref, f"{SHIPPED}@{v2}"
    for seed in range(N_STUDIES):
        screen(server, seed)
    ops.shadow.drain()
    keys = [study_key(None, png(s)) for s in range(N_STUDIES)]
    logged = ops.shadow.predictions.for_studies(keys)
    prod = {p.study_key: p.scores["Effusion"] for p in logged if p.ref == prod_ref}
    cand = {p.study_key for p in logged if p.ref == cand_ref}
    assert set(prod) == set(keys)  # production scored canary studies too, off the request path
    median = float(np.median(list(prod.values())))
    positive = {k: prod[k] > median for k in keys}
    paired_pos = sum(positive[k] for k in cand)
    assert paired_pos >= MIN_LIVE_PATIENTS and len(cand) - paired_pos >= MIN_LIVE_PATIENTS
    for k in keys:
        r = post(server, {"upload_sha256": k.removeprefix("sha256:"), "patient_id": f"p-{k[7:15]}",
                          "findings": {"Effusion": positive[k]}})  # fmt: skip
        assert r.status_code == 201, r.text
    deadline = time.monotonic() + 120
    while ops.lifecycle.deployment.canary is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ops.lifecycle.deployment.canary is None, "the canary was not rolled back"
    (rb,) = ops.monitor.rollbacks
    assert rb.ref == cand_ref and rb.condition == "Effusion"
    assert rb.auc_production - rb.auc_candidate > 0.02 and rb.ci[0] > 0
    last = call(server, "GET", "/api/v1/models/history").json()["events"][-1]
    assert (last["ref"], last["to"], last["actor"]) == (cand_ref, "retired", "auto-rollback")
    assert "Effusion" in last["reason"]
    metrics = call(server, "GET", "/metrics").text
    assert f'radclip_auto_rollback{{condition="Effusion",version="{cand_ref}"}} 1.0' in metrics
    assert f'radclip_live_auc{{condition="Effusion",version="{prod_ref}"}} 1.0' in metrics
    assert {screen(server, s)["model_version"]["triage"]["version"] for s in range(8)} == {
        prod_ref.split("@")[1]
    }
