"""Turning a screening result into idempotent FHIR writes, and reading context back from the server.

:func:`report_delivery` rewrites the ``collection`` Bundle of
:func:`radclip.integrations.fhir_report.build_readable_report` into what :func:`deliver` sends:

- the patient's identifier (the DICOM PatientID, an MRN), resolved at delivery to
  ``Patient/<server id>`` by :func:`radclip.integrations.fhir_patient.resolve_subject`;
- an ``ImagingStudy`` for the DICOM study, created only if none with that StudyInstanceUID
  exists (conditional create, ``If-None-Exist``); the report (``imagingStudy``) and every
  Observation (``derivedFrom``) reference it: the link from the result back to the PACS study;
- a ``batch`` Bundle of ``PUT``s: the Devices, the Observations, the DiagnosticReport and the
  Provenance, each with a deterministic id (UUIDv5 over the study, the image and the model
  versions; a Device's over the model name, version and sha256), so delivering the same result
  twice updates in place instead of creating a duplicate.

A ``batch`` rather than a ``transaction``: servers cap transaction size (Medplum: 50 writes)
and a detailed report carries one Observation per finding; idempotent PUTs make a partial
batch safe to re-send whole.
"""

from __future__ import annotations

import dataclasses
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
from radclip.integrations.fhir_patient import identifier_query, resolve_subject
from radclip.io.contract import ImageMeta

log = logging.getLogger(__name__)
NAMESPACE = uuid.UUID("5b0d3c9e-6a53-4b8e-9a51-7a1c2d0f3e11")  # radclip's UUIDv5 namespace for FHIR ids
REPORT_ID_SYSTEM = "https://radclip.dev/fhir/NamingSystem/report-key"
DICOM_UID = "urn:dicom:uid"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
STUDY_PLACEHOLDER = "urn:radclip:imaging-study"  # replaced by ImagingStudy/<server id> at delivery
SUBJECT_PLACEHOLDER = "urn:radclip:subject"  # replaced by the Patient resolved by identifier at delivery


def delivery_key(study_uid: str | None, sop_uid: str | None, model_versions: dict[str, str]) -> str:
    """The idempotency key of one result: same image + same models -> same key -> same FHIR ids."""
    models = ",".join(f"{k}={v}" for k, v in sorted(model_versions.items()))
    return f"{study_uid or '-'}|{sop_uid or '-'}|{models}"


def _id(kind: str, key: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{key}"))


def _imaging_study(ctx: PatientStudyContext, subject: dict[str, Any]) -> dict[str, Any]:
    study: dict[str, Any] = {
        "resourceType": "ImagingStudy", "status": "available", "subject": subject,
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


def _stable_id(resource: dict[str, Any], key: str) -> str:
    """The deterministic id of one resource of a result (see the module docstring)."""
    kind = resource["resourceType"]
    if kind == "Observation":
        coding = resource["code"].get("coding", [{}])[0]
        method = next((c.get("valueString") for c in resource.get("component", []) if c["code"].get("text") == "method"), "")
        return _id("observation", f"{key}|{coding.get('system')}|{coding.get('code')}|{method}")
    if kind == "Device":  # one Device per model, shared by every report it wrote
        sha = next((i["value"] for i in resource.get("identifier", [])), "")
        return _id("device", f"{resource['deviceName'][0]['name']}|{resource['version'][0]['value']}|{sha}")
    return _id(kind.lower() if kind != "DiagnosticReport" else "report", key)


def report_delivery(collection: dict[str, Any], ctx: PatientStudyContext, key: str, create_patient: bool = False) -> dict[str, Any]:
    """What to send for one result (validated JSON, stored as is in the outbox); see the module docstring.

    ``{"patient": {"identifier", "create"} | None, "imaging_study": {"resource", "if_none_exist"} | None,
    "batch": Bundle}``. At delivery (:func:`deliver`) the patient identifier is resolved to a
    reference, the ImagingStudy is created conditionally, then the batch of ``PUT``s is sent with
    the placeholders (``SUBJECT_PLACEHOLDER``, ``STUDY_PLACEHOLDER``) replaced.
    """
    resources = [e["resource"] for e in collection.get("entry", [])]
    reports = [r for r in resources if r["resourceType"] == "DiagnosticReport"]
    if len(reports) != 1:
        raise ValueError(f"expected one DiagnosticReport in the bundle, found {len(reports)}")
    renamed = {f"urn:uuid:{r['id']}": f"{r['resourceType']}/{_stable_id(r, key)}" for r in resources}
    text = json.dumps(resources)
    for local, stable in renamed.items():
        text = text.replace(f'"{local}"', f'"{stable}"')
    resources = json.loads(text)
    subject = reports[0].get("subject")
    patient = {"identifier": subject["identifier"], "create": create_patient} if subject and "identifier" in subject else None
    study = None
    if ctx.study_instance_uid and subject:
        study = {"resource": validate_resource(_imaging_study(ctx, subject)),
                 "if_none_exist": f"identifier={DICOM_UID}|urn:oid:{ctx.study_instance_uid}"}  # fmt: skip
    entries: list[dict[str, Any]] = []
    for r in resources:
        r["id"] = renamed[f"urn:uuid:{r['id']}"].split("/")[1]
        if "subject" in r and patient:
            r["subject"] = {"reference": SUBJECT_PLACEHOLDER}
        if study and r["resourceType"] == "Observation" and "derivedFrom" in r:
            r["derivedFrom"] = [{"reference": STUDY_PLACEHOLDER}]
        if r["resourceType"] == "DiagnosticReport":
            r["identifier"] = [*r.get("identifier", []), {"system": REPORT_ID_SYSTEM, "value": r["id"]}]
            if study:
                r["imagingStudy"] = [{"reference": STUDY_PLACEHOLDER}]
        entries.append({"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}})
    # members before the report, Devices before the Provenance that names them: referenced first
    order = {"Device": 0, "Observation": 1, "DiagnosticReport": 2, "Provenance": 3}
    entries.sort(key=lambda e: order.get(e["resource"]["resourceType"], 1))
    return {
        "patient": patient,
        "imaging_study": study,
        "batch": validate_resource({"resourceType": "Bundle", "type": "batch", "entry": entries}),
    }


def deliver(client: FhirClient, delivery: dict[str, Any]) -> str:
    """Send one :func:`report_delivery` payload; returns the DiagnosticReport reference. Idempotent.

    Raises :class:`FhirUnavailableError` when an entry failed with a server error (retry later) and
    :class:`FhirRequestError` when one was refused (4xx).
    """
    replace: dict[str, str] = {}
    subject = None
    if delivery.get("patient"):
        spec = delivery["patient"]
        subject = resolve_subject(client, spec["identifier"], create=bool(spec.get("create")))
        replace[json.dumps({"reference": SUBJECT_PLACEHOLDER})] = json.dumps(subject)
    if delivery.get("imaging_study"):
        spec = delivery["imaging_study"]
        study = {**spec["resource"], **({"subject": subject} if subject else {})}
        created = client.create(study, if_none_exist=spec["if_none_exist"])
        replace[json.dumps(STUDY_PLACEHOLDER)] = json.dumps(f"ImagingStudy/{created['id']}")
    text = json.dumps(delivery["batch"])
    for placeholder, value in replace.items():
        text = text.replace(placeholder, value)
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
    return next(e["request"]["url"] for e in batch["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")


def fetch_context(client: FhirClient, meta: ImageMeta, mrn_system: str | None = None) -> PatientStudyContext:
    """Patient and study context from the FHIR server over the DICOM header.

    The Patient is found by identifier (``Patient?identifier=SYSTEM|<DICOM PatientID>``), the
    ImagingStudy by StudyInstanceUID. ``patient_id`` in the result stays the DICOM PatientID (the
    MRN the report references by identifier). A server error, a missing resource or several
    Patients with that identifier fall back to the header alone (logged, not raised).
    """
    patient = study = None
    try:
        if meta.patient_id:
            ident = {"value": meta.patient_id, **({"system": mrn_system} if mrn_system else {})}
            found = client.search("Patient", {"identifier": identifier_query(ident)})
            patient = found[0] if len(found) == 1 else None
        if meta.study_instance_uid:
            found = client.search(
                "ImagingStudy", {"identifier": f"{DICOM_UID}|urn:oid:{meta.study_instance_uid}"}
            )
            study = found[0] if found else None
    except FhirError as exc:
        log.warning(
            "FHIR context not read for study %s (%s); using the DICOM header", meta.study_instance_uid, exc
        )
    if not (patient or study):
        return context_from_dicom(meta)
    return dataclasses.replace(context_from_fhir(patient, study, meta), patient_id=meta.patient_id)
