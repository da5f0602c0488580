"""Client retries, outbox semantics and the WADO-RS multipart parser, without servers (httpx.MockTransport)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from radclip.integrations.fhir_client import (
    FhirClient,
    FhirClientConfig,
    FhirRequestError,
    FhirResourceInvalid,
    FhirUnavailableError,
)


def _client(handler: Any, retries: int = 2) -> FhirClient:
    cfg = FhirClientConfig("http://fhir.test/R4", retries=retries, backoff_s=0.001)
    return FhirClient(cfg, transport=httpx.MockTransport(handler))


def _delivery(n: int) -> dict[str, Any]:
    from radclip.integrations.fhir_context import PatientStudyContext
    from radclip.integrations.fhir_exchange import delivery_key, report_delivery
    from radclip.integrations.fhir_provenance import ModelIdentity
    from radclip.integrations.fhir_report import ReportFinding, build_readable_report

    ctx = PatientStudyContext(
        patient_id="p1",
        study_instance_uid=f"1.2.3.{n}",
        series_instance_uid="1.2.3.9",
        sop_instance_uid="1.2.3.9.1",
    )
    bundle = build_readable_report([ReportFinding("Effusion", 0.7, "triage")], ctx, [ModelIdentity("triage", "t", "1", "ab" * 32)])
    return report_delivery(
        bundle, ctx, delivery_key(ctx.study_instance_uid, ctx.sop_instance_uid, {"triage": "t@1"})
    )


def _batch_ok(request: httpx.Request) -> httpx.Response:
    if request.method == "GET" and request.url.path.endswith("/Patient"):  # no Patient with the MRN
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": []})
    if request.url.path.endswith("/ImagingStudy"):
        return httpx.Response(201, json={"resourceType": "ImagingStudy", "id": "is1"})
    entries = json.loads(request.content)["entry"]
    return httpx.Response(
        200,
        json={
            "resourceType": "Bundle",
            "type": "batch-response",
            "entry": [{"response": {"status": "200 OK"}}] * len(entries),
        },
    )


def test_retries_then_unavailable_and_4xx_is_not_retried() -> None:
    calls: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(
            503,
            json={
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "transient", "diagnostics": "busy"}],
            },
        )

    with pytest.raises(FhirUnavailableError, match="after 3 attempt"):
        _client(flaky).read("Patient", "p1")
    assert len(calls) == 3
    calls.clear()

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(
            422,
            json={
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "invalid", "diagnostics": "bad code"}],
            },
        )

    with pytest.raises(FhirRequestError, match="HTTP 422: bad code"):
        _client(refuse).create({"resourceType": "Patient", "id": "p1"})
    assert len(calls) == 1
    with pytest.raises(FhirResourceInvalid, match="Observation"):
        _client(refuse).create({"resourceType": "Observation", "status": "not-a-status"})
    assert len(calls) == 1  # invalid resources never leave the process


def test_delivery_is_deterministic_and_links_the_study() -> None:
    a, b = _delivery(1), _delivery(1)
    assert [e["request"]["url"] for e in a["batch"]["entry"]] == [
        e["request"]["url"] for e in b["batch"]["entry"]
    ]
    kinds = [e["resource"]["resourceType"] for e in a["batch"]["entry"]]
    assert kinds == ["Device", "Observation", "DiagnosticReport", "Provenance"]  # referenced before referencing
    report = a["batch"]["entry"][2]["resource"]
    assert report["imagingStudy"][0]["reference"] == "urn:radclip:imaging-study"
    assert report["subject"] == {"reference": "urn:radclip:subject"} and a["patient"]["identifier"] == {"value": "p1"}
    assert a["imaging_study"]["if_none_exist"] == "identifier=urn:dicom:uid|urn:oid:1.2.3.1"
    assert a["batch"]["entry"][2]["request"]["url"] != _delivery(2)["batch"]["entry"][2]["request"]["url"]
    # the Device is the model's, shared by every result; the Provenance points at the stable ids
    assert a["batch"]["entry"][0]["request"]["url"] == _delivery(2)["batch"]["entry"][0]["request"]["url"]
    prov = a["batch"]["entry"][3]["resource"]
    assert {t["reference"] for t in prov["target"]} == {e["request"]["url"] for e in a["batch"]["entry"][1:3]}
    assert prov["agent"][0]["who"]["reference"] == a["batch"]["entry"][0]["request"]["url"]


def test_outbox_dedups_marks_failed_and_keeps_order(tmp_path: Path) -> None:
    from radclip.integrations.delivery_queue import DeliveryQueue

    queue = DeliveryQueue(tmp_path / "outbox.db")
    assert queue.enqueue("k1", _delivery(1)) and not queue.enqueue("k1", _delivery(1))
    assert queue.enqueue("k2", _delivery(2))
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        if body.get("resourceType") == "ImagingStudy":
            seen.append(body["identifier"][0]["value"])
            if body["identifier"][0]["value"].endswith(".1"):
                return httpx.Response(
                    400,
                    json={
                        "resourceType": "OperationOutcome",
                        "issue": [{"severity": "error", "code": "invalid"}],
                    },
                )
        assert "urn:radclip:imaging-study" not in request.content.decode()  # replaced by the server id
        return _batch_ok(request)

    stats = queue.deliver_pending(_client(handler))
    assert (stats.delivered, stats.failed, stats.pending) == (1, 1, 0)
    assert seen == ["urn:oid:1.2.3.1", "urn:oid:1.2.3.2"]  # a refused row does not block the next one
    assert [r["status"] for r in queue.rows()] == ["failed", "delivered"]


def test_split_multipart() -> None:
    from radclip.integrations.dicomweb_client import split_multipart

    body = b"--abc\r\nContent-Type: application/dicom\r\n\r\n\x00DICM\r\n1\r\n--abc--\r\n"
    assert split_multipart(body, 'multipart/related; type="application/dicom"; boundary=abc') == [
        b"\x00DICM\r\n1"
    ]
