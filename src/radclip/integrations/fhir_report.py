"""Screening and triage results as a FHIR R4 ``DiagnosticReport`` with one ``Observation`` per finding.

Codes: SNOMED CT where the finding has a well-known concept, otherwise radclip's local code
system (``LOCAL_SYSTEM``). Model versions and confidences are recorded in Observation
components and a report extension. Every resource is validated before it is returned.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from radclip.integrations.fhir_context import PatientStudyContext

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
LOCAL_SYSTEM = "https://radclip.dev/fhir/CodeSystem/finding"
MODEL_EXT = "https://radclip.dev/fhir/StructureDefinition/model-version"
# SNOMED CT concepts for the findings where the mapping is unambiguous.
SNOMED_CODES: dict[str, tuple[str, str]] = {
    "Effusion": ("60046008", "Pleural effusion"),
    "Cardiomegaly": ("8186001", "Cardiomegaly"),
    "Pneumothorax": ("36118008", "Pneumothorax"),
    "Atelectasis": ("46621007", "Atelectasis"),
    "Pneumonia": ("233604007", "Pneumonia"),
    "Edema": ("19242006", "Pulmonary edema"),
    "Emphysema": ("87433001", "Pulmonary emphysema"),
    "Fibrosis": ("51615001", "Fibrosis of lung"),
    "Hernia": ("84089009", "Hiatal hernia"),
}


@dataclass(frozen=True)
class ReportFinding:
    name: str
    confidence: float  # [0, 1]
    source: str  # "triage" or "zero-shot"
    display: str | None = None


def report_findings(labels: Sequence[str], probs: Sequence[float], screened: Sequence[Any]) -> list[ReportFinding]:
    """What a report states: the triage probabilities, then zero-shot findings the triage labels do not cover.

    ``screened`` are screening findings (``name``, ``confidence``, ``suppressed``); suppressed ones are left out.
    """
    items = [ReportFinding(n, float(p), "triage") for n, p in zip(labels, probs, strict=True)]
    covered = set(labels)
    return items + [ReportFinding(f.name, float(f.confidence), "zero-shot") for f in screened if not f.suppressed and f.name not in covered]


def _code(name: str, display: str | None) -> dict[str, Any]:
    if name in SNOMED_CODES:
        code, disp = SNOMED_CODES[name]
        return {"coding": [{"system": SNOMED, "code": code, "display": disp}], "text": display or disp}
    return {"coding": [{"system": LOCAL_SYSTEM, "code": name, "display": display or name.replace("_", " ")}], "text": display or name}


def _validated(resource: dict[str, Any]) -> dict[str, Any]:
    import importlib

    kind = resource["resourceType"]
    model = getattr(importlib.import_module(f"fhir.resources.R4B.{kind.lower()}"), kind)
    return model.model_validate(resource).model_dump(mode="json", exclude_none=True)


def build_report_bundle(
    findings: Sequence[ReportFinding],
    context: PatientStudyContext,
    model_versions: dict[str, str],
    threshold: float = 0.5,
    issued: dt.datetime | None = None,
) -> dict[str, Any]:
    """A ``collection`` Bundle: the DiagnosticReport first, then its Observations (validated)."""
    issued = issued or dt.datetime.now(dt.UTC)
    subject = {"reference": f"Patient/{context.patient_id}"} if context.patient_id else None
    study_ref = {"reference": f"urn:dicom:uid:{context.study_instance_uid}"} if context.study_instance_uid else None
    components_model = [{"code": {"text": f"model-version:{role}"}, "valueString": v} for role, v in sorted(model_versions.items())]
    observations = []
    for f in findings:
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "id": str(uuid.uuid4()),
            "status": "preliminary",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging"}]}],
            "code": _code(f.name, f.display),
            "valueBoolean": bool(f.confidence >= threshold),
            "component": [
                {"code": {"text": "confidence"}, "valueQuantity": {"value": round(float(f.confidence), 4), "unit": "1"}},
                {"code": {"text": "method"}, "valueString": f.source},
                *components_model,
            ],
            "issued": issued.isoformat(),
        }
        if subject:
            obs["subject"] = subject
        if study_ref:
            obs["derivedFrom"] = [{"identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{context.study_instance_uid}"}}]
        observations.append(_validated(obs))
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": str(uuid.uuid4()),
        "status": "preliminary",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD", "display": "Radiology"}]}],
        "code": {"coding": [{"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}], "text": "radclip chest X-ray AI screening"},
        "issued": issued.isoformat(),
        "result": [{"reference": f"urn:uuid:{o['id']}"} for o in observations],
        "conclusion": "AI-generated preliminary findings; not a radiologist's report.",
        "extension": [{"url": MODEL_EXT, "valueString": f"{role}={v}"} for role, v in sorted(model_versions.items())],
    }
    if subject:
        report["subject"] = subject
    if study_ref and context.study_instance_uid:
        report["identifier"] = [{"system": "urn:dicom:uid", "value": f"urn:oid:{context.study_instance_uid}"}]
    report = _validated(report)
    entries = [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in (report, *observations)]
    return _validated({"resourceType": "Bundle", "type": "collection", "entry": entries})
