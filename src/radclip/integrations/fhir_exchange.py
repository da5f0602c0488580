"""Turning a screening result into idempotent FHIR writes, and reading context back from the server.

:func:`report_delivery` rewrites the ``collection`` Bundle of
:func:`radclip.integrations.fhir_report.build_report_bundle` into what :func:`deliver` sends:

- an ``ImagingStudy`` for the DICOM study, created only if none with that StudyInstanceUID
  exists (conditional create, ``If-None-Exist``); the report (``imagingStudy``) and every
  Observation (``derivedFrom``) reference it: the link from the result back to the PACS study;
- a ``batch`` Bundle of ``PUT``s: the Observations, then the DiagnosticReport, each with a
  deterministic id (UUIDv5 over the study, the image and the model versions), so delivering
  the same result twice updates in place instead of creating a duplicate.

A ``batch`` rather than a ``transaction``: servers cap transaction size (Medplum: 50 writes)
and a report carries one Observation per finding; idempotent PUTs make a partial batch safe
to re-send whole.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from radclip.integrations.fhir_client import (
    FhirClient,
    FhirError,
    FhirRequestError,
    FhirUnavailableError,
    validate_resource,
)
from radclip.integrations.fhir_context import PatientStudyContext, context_from_dicom, context_from_fhir
from radclip.io.contract import ImageMeta

log = logging.getLogger(__name__)
NAMESPACE = uuid.UUID("5b0d3c9e-6a53-4b8e-9a51-7a1c2d0f3e11")  # radclip's UUIDv5 namespace for FHIR ids
REPORT_ID_SYSTEM = "https://radclip.dev/fhir/NamingSystem/report-key"
DICOM_UID = "urn:dicom:uid"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
STUDY_PLACEHOLDER = "urn:radclip:imaging-study"  # replaced by ImagingStudy/<server id> at delivery


def delivery_key(study_uid: str | None, sop_uid: str | None, model_versions: dict[str, str]) -> str:
    """The idempotency key of one result: same image + same models -> same key -> same FHIR ids."""
    models = ",".join(f"{k}={v}" for k, v in sorted(model_versions.items()))
    return f"{study_uid or '-'}|{sop_uid or '-'}|{models}"


def _id(kind: str, key: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{key}"))


def _imaging_study(ctx: PatientStudyContext) -> dict[str, Any]:
    study: dict[str, Any] = {
        "resourceType": "ImagingStudy", "status": "available", "subject": {"reference": f"Patient/{ctx.patient_id}"},
        "identifier": [{"system": DICOM_UID, "value": f"urn:oid:{ctx.study_instance_uid}"}],
    }  # fmt: skip
    if ctx.study_date:
        study["started"] = ctx.study_date
    if ctx.series_instance_uid:
        series: dict[str, Any] = {
            "uid": ctx.series_instance_uid,
            "modality": {"system": DCM, "code": ctx.modality or "OT"},
        }
        if ctx.sop_instance_uid:
            series["instance"] = [
                {
                    "uid": ctx.sop_instance_uid,
                    "sopClass": {"system": "urn:ietf:rfc:3986", "code": "urn:oid:1.2.840.10008.5.1.4.1.1.7"},
                }
            ]
        study["series"] = [series]
    return study


def report_delivery(collection: dict[str, Any], ctx: PatientStudyContext, key: str) -> dict[str, Any]:
    """What to send for one result (validated JSON, stored as is in the outbox); see the module docstring.

    ``{"imaging_study": {"resource", "if_none_exist"} | None, "batch": Bundle}``: the ImagingStudy is
    created conditionally first, then the batch of ``PUT``s, whose references to the placeholder
    ``STUDY_PLACEHOLDER`` are replaced by the study's server id at delivery (:func:`deliver`).
    """
    resources = [e["resource"] for e in collection.get("entry", [])]
    reports = [r for r in resources if r["resourceType"] == "DiagnosticReport"]
    if len(reports) != 1:
        raise ValueError(f"expected one DiagnosticReport in the bundle, found {len(reports)}")
    report = dict(reports[0])
    study = None
    study_ref = {"reference": STUDY_PLACEHOLDER}
    if ctx.study_instance_uid and ctx.patient_id:
        study = {"resource": validate_resource(_imaging_study(ctx)),
                 "if_none_exist": f"identifier={DICOM_UID}|urn:oid:{ctx.study_instance_uid}"}  # fmt: skip
    entries: list[dict[str, Any]] = []
    new_ids: dict[str, str] = {}
    for obs in (r for r in resources if r["resourceType"] == "Observation"):
        obs = dict(obs)
        coding = obs["code"].get("coding", [{}])[0]
        method = next(
            (c.get("valueString") for c in obs.get("component", []) if c["code"].get("text") == "method"), ""
        )
        oid = _id("observation", f"{key}|{coding.get('system')}|{coding.get('code')}|{method}")
        new_ids[f"urn:uuid:{obs['id']}"] = f"Observation/{oid}"
        obs["id"] = oid
        if study:
            obs["derivedFrom"] = [study_ref]
        entries.append({"resource": obs, "request": {"method": "PUT", "url": f"Observation/{oid}"}})
    rid = report["id"] = _id("report", key)
    report["result"] = [
        {"reference": new_ids.get(r["reference"], r["reference"])} for r in report.get("result", [])
    ]
    report["identifier"] = [*report.get("identifier", []), {"system": REPORT_ID_SYSTEM, "value": rid}]
    if study:
        report["imagingStudy"] = [study_ref]
    entries.append(
        {"resource": report, "request": {"method": "PUT", "url": f"DiagnosticReport/{rid}"}}
    )  # last: results exist first
    return {
        "imaging_study": study,
        "batch": validate_resource({"resourceType": "Bundle", "type": "batch", "entry": entries}),
    }


def deliver(client: FhirClient, delivery: dict[str, Any]) -> str:
    """Send one :func:`report_delivery` payload; returns the DiagnosticReport reference. Idempotent.

    Raises :class:`FhirUnavailableError` when an entry failed with a server error (retry later) and
    :class:`FhirRequestError` when one was refused (4xx).
    """
    batch = delivery["batch"]
    if delivery.get("imaging_study"):
        spec = delivery["imaging_study"]
        created = client.create(spec["resource"], if_none_exist=spec["if_none_exist"])
        text = json.dumps(batch).replace(STUDY_PLACEHOLDER, f"ImagingStudy/{created['id']}")
        batch = json.loads(text)
    answer = client.transaction(batch)
    statuses = [str(e.get("response", {}).get("status", "")) for e in answer.get("entry", [])]
    codes = [int(s.split()[0]) if s[:3].isdigit() else 0 for s in statuses]
    if len(codes) != len(batch["entry"]) or any(c >= 500 or c == 0 for c in codes):
        raise FhirUnavailableError(
            f"FHIR batch partly failed (entry statuses {sorted(set(statuses))}); will retry"
        )
    refused = [s for s, c in zip(statuses, codes, strict=True) if c >= 400]
    if refused:
        raise FhirRequestError(f"FHIR batch entries refused: {sorted(set(refused))}", int(refused[0][:3]))
    return batch["entry"][-1]["request"]["url"]


def fetch_context(client: FhirClient, meta: ImageMeta) -> PatientStudyContext:
    """Patient and study context from the FHIR server (Patient by id, ImagingStudy by StudyInstanceUID), over the DICOM header.

    A server error or a missing resource falls back to the header alone (logged, not raised).
    """
    patient = study = None
    try:
        if meta.patient_id:
            patient = client.read("Patient", meta.patient_id)
        if meta.study_instance_uid:
            found = client.search(
                "ImagingStudy", {"identifier": f"{DICOM_UID}|urn:oid:{meta.study_instance_uid}"}
            )
            study = found[0] if found else None
    except FhirError as exc:
        log.warning(
            "FHIR context not read for study %s (%s); using the DICOM header", meta.study_instance_uid, exc
        )
    return context_from_fhir(patient, study, meta) if (patient or study) else context_from_dicom(meta)
