"""Screening, conditions and retrieval through a real uvicorn server (tiny models, tiny corpus)."""

from __future__ import annotations

import io
import time

import httpx
import numpy as np
from PIL import Image


def _png(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((128, 128)) * 255).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _wait_ready(url: str, timeout: float = 120) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/readyz").json()
        if body["index"]["state"] in ("ready", "failed"):
            return body  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError("index never became ready")


def test_screen_returns_ranked_findings_triage_and_embedding(live_server) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(f"{live_server.url}/api/v1/screen", content=_png(), headers={"content-type": "image/png"}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["findings"]) >= 60
    conf = [f["confidence"] for f in body["findings"]]
    assert conf == sorted(conf, reverse=True) and all(0 <= c <= 1 for c in conf)
    assert [f["rank"] for f in body["findings"][:3]] == [1, 2, 3]
    emb = np.array(body["embedding"])
    assert abs(np.linalg.norm(emb) - 1) < 1e-4
    assert len(body["triage"]) == 14
    assert {"triage", "clip", "registry"} <= set(body["model_version"])


def test_screen_fhir_output_and_bad_fhir_input(live_server) -> None:  # type: ignore[no-untyped-def]
    patient = '{"resourceType": "Patient", "id": "p7", "gender": "female", "birthDate": "1940-02-03"}'
    r = httpx.post(f"{live_server.url}/api/v1/screen?format=fhir", files={"file": ("x.png", _png(), "image/png")},
                   data={"patient": patient}, timeout=120)  # fmt: skip
    assert r.status_code == 200, r.text
    bundle = r.json()
    report = bundle["entry"][0]["resource"]
    assert report["resourceType"] == "DiagnosticReport" and report["subject"]["reference"] == "Patient/p7"
    assert len(report["result"]) == len(bundle["entry"]) - 1 >= 14
    bad = httpx.post(f"{live_server.url}/api/v1/screen", files={"file": ("x.png", _png(), "image/png")},
                     data={"patient": '{"resourceType": "Patient", "birthDate": "yesterday"}'}, timeout=60)  # fmt: skip
    assert bad.status_code == 422 and "birthDate" in bad.json()["detail"]


def test_register_condition_appears_in_screening_and_is_versioned(live_server) -> None:  # type: ignore[no-untyped-def]
    url = live_server.url
    body = {"name": "test_sarcoidosis", "prompts": ["bilateral hilar lymphadenopathy", "enlarged hilar lymph nodes on both sides"], "category": "cardiomediastinal"}
    first = httpx.post(f"{url}/api/v1/register-condition", json=body, timeout=60).json()
    assert first["status"] == "registered" and first["version"] == 1
    again = httpx.post(f"{url}/api/v1/register-condition", json=body, timeout=60).json()
    assert again["status"] == "unchanged" and again["version"] == 1
    body["prompts"].append("perihilar nodal enlargement, symmetric")
    assert httpx.post(f"{url}/api/v1/register-condition", json=body, timeout=60).json()["version"] == 2
    names = [c["name"] for c in httpx.get(f"{url}/api/v1/conditions").json()]
    assert "test_sarcoidosis" in names and len(names) >= 61
    screened = httpx.post(f"{url}/api/v1/screen", content=_png(), headers={"content-type": "image/png"}, timeout=120).json()
    assert "test_sarcoidosis" in [f["pathology"] for f in screened["findings"]]
    assert len(httpx.get(f"{url}/api/v1/conditions/test_sarcoidosis/history").json()) == 2
    assert httpx.delete(f"{url}/api/v1/conditions/test_sarcoidosis").json()["status"] == "retired"
    gone = httpx.get(f"{url}/api/v1/conditions/test_sarcoidosis/history")  # retired: read back as documented
    assert gone.status_code == 404 and gone.json()["type"].endswith("/condition-retired")
    assert httpx.delete(f"{url}/api/v1/conditions/never_was").status_code == 404
    bad = httpx.post(f"{url}/api/v1/register-condition", json={"name": "Bad Name!", "prompts": ["x"]})
    assert bad.status_code == 422 and bad.json()["fix"]


def test_retrieval_by_text_and_image(live_server) -> None:  # type: ignore[no-untyped-def]
    ready = _wait_ready(live_server.url)
    assert ready["index"]["state"] == "ready" and ready["index"]["total"] == 12
    r = httpx.post(f"{live_server.url}/api/v1/retrieve", json={"query": "left pleural effusion in elderly patient", "top_k": 5})
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert len(hits) == 5 and [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    sims = [h["similarity"] for h in hits]
    assert sims == sorted(sims, reverse=True)
    # An image already in the corpus finds itself first.
    own = (live_server.corpus / "case03.png").read_bytes()
    r = httpx.post(f"{live_server.url}/api/v1/similar?top_k=3", content=own, headers={"content-type": "image/png"}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["study_id"] == "case03"
    assert r.json()["results"][0]["similarity"] > 0.999
    for bad in ({"query": "", "top_k": 5}, {"query": "x", "top_k": 0}, {"query": "x", "top_k": 1000}, {"top_k": 3}):
        resp = httpx.post(f"{live_server.url}/api/v1/retrieve", json=bad)
        assert resp.status_code == 422, bad


def test_screen_with_similar_cases_matches_the_similar_endpoint(live_server) -> None:  # type: ignore[no-untyped-def]
    """/screen?similar=K returns the same neighbours as /similar, from the same single image embedding."""
    assert _wait_ready(live_server.url)["index"]["state"] == "ready"
    own = (live_server.corpus / "case05.png").read_bytes()
    headers = {"content-type": "image/png"}
    screened = httpx.post(f"{live_server.url}/api/v1/screen?similar=4", content=own, headers=headers, timeout=60)
    assert screened.status_code == 200, screened.text
    similar = httpx.post(f"{live_server.url}/api/v1/similar?top_k=4", content=own, headers=headers, timeout=60).json()["results"]
    got = screened.json()["similar"]
    assert [h["study_id"] for h in got] == [h["study_id"] for h in similar] and got[0]["study_id"] == "case05"
    assert np.allclose([h["similarity"] for h in got], [h["similarity"] for h in similar], atol=1e-5)
    plain = httpx.post(f"{live_server.url}/api/v1/screen", content=own, headers=headers, timeout=60).json()
    assert plain["similar"] is None
    # Server-Timing names each stage; the stages add up to the total.
    stages = dict(part.split(";dur=") for part in screened.headers["server-timing"].split(", "))
    assert list(stages) == ["queue", "decode", "models", "screen", "similar", "respond", "total"]
    assert abs(sum(float(v) for k, v in stages.items() if k != "total") - float(stages["total"])) < 0.05
    assert httpx.post(f"{live_server.url}/api/v1/screen?similar=-1", content=own, headers=headers).status_code == 422


def test_ingest_study_then_find_it_and_read_it(live_server) -> None:  # type: ignore[no-untyped-def]
    _wait_ready(live_server.url)
    png = _png(seed=4242)
    r = httpx.post(f"{live_server.url}/api/v1/studies?study_id=new-study-1", content=png, headers={"content-type": "image/png"}, timeout=60)
    assert r.status_code == 201, r.text
    assert r.json()["added"] is True and r.json()["study"]["study_id"] == "new-study-1"
    again = httpx.post(f"{live_server.url}/api/v1/studies?study_id=new-study-1", content=png, headers={"content-type": "image/png"}, timeout=60)
    assert again.json()["added"] is False  # idempotent: no duplicate in the index
    meta = httpx.get(f"{live_server.url}/api/v1/studies/new-study-1").json()
    assert meta["source"] == "api"
    hits = httpx.post(f"{live_server.url}/api/v1/similar?top_k=1", content=png, headers={"content-type": "image/png"}, timeout=60).json()
    assert hits["results"][0]["study_id"] == "new-study-1" and hits["results"][0]["similarity"] > 0.999
    assert httpx.get(f"{live_server.url}/api/v1/studies/never-seen").status_code == 404
    bad = httpx.post(f"{live_server.url}/api/v1/studies?study_id=../../etc", content=png, headers={"content-type": "image/png"})
    assert bad.status_code == 422
