"""Screening and triage results as a readable FHIR R4 ``DiagnosticReport``.

- One ``Observation`` per finding at or above its operating point
  (:mod:`radclip.integrations.operating_points`); the others are summarised in one sentence of
  ``DiagnosticReport.conclusion``. With ``ReportOptions.detail`` they are also sent, as
  Observations grouped under one panel Observation (``hasMember``).
- ``conclusion`` reads at a glance: "AI triage (radclip-mobilenetv2-nih v0.1.0): possible pleural
  effusion (0.81). No other finding above threshold (69 checked)." ``conclusionCode`` lists the
  present findings' SNOMED CT codes.
- The models are ``Device`` resources and a ``Provenance`` names them as the author
  (:mod:`radclip.integrations.fhir_provenance`); every generated resource is labelled ``AIAST``.
- The patient is referenced by identifier (the DICOM PatientID is an MRN, not a FHIR id):
  ``{"identifier": {"system": RADCLIP_FHIR_MRN_SYSTEM, "value": MRN}}``; delivery resolves it
  to ``Patient/<server id>`` (:mod:`radclip.integrations.fhir_patient`).

Codes: SNOMED CT where the finding has a well-known concept, otherwise radclip's local code
system (``LOCAL_SYSTEM``). Every resource is validated before it is returned.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from radclip.integrations.fhir_context import PatientStudyContext
from radclip.integrations.fhir_provenance import AIAST, ModelIdentity, device_resource, provenance_resource
from radclip.integrations.operating_points import DEFAULT_OPERATING_POINT, zero_shot_operating_point

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
LOCAL_SYSTEM = "https://radclip.dev/fhir/CodeSystem/finding"
MODEL_EXT = "https://radclip.dev/fhir/StructureDefinition/model-version"
IMAGING = {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging"}
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
    threshold: float = DEFAULT_OPERATING_POINT  # operating point: present when confidence >= threshold

    @property
    def present(self) -> bool:
        return self.confidence >= self.threshold

    @property
    def words(self) -> str:
        """How the finding reads in a sentence: the SNOMED display, else the name with spaces; lower case."""
        text = self.display or (
            SNOMED_CODES[self.name][1] if self.name in SNOMED_CODES else self.name.replace("_", " ")
        )
        return " ".join(
            w if len(w) > 1 and w.isupper() else w.lower() for w in text.split()
        )  # keep acronyms (ARDS)


@dataclass(frozen=True)
class ReportOptions:
    mrn_system: str | None = (
        None  # Patient.identifier system of the DICOM PatientID (RADCLIP_FHIR_MRN_SYSTEM)
    )
    detail: bool = False  # also send below-threshold findings, under a panel Observation (hasMember)


def report_findings(
    labels: Sequence[str],
    probs: Sequence[float],
    screened: Sequence[Any],
    operating_points: Mapping[str, float] | None = None,
) -> list[ReportFinding]:
    """What a report states: the triage probabilities, then zero-shot findings the triage labels do not cover.

    ``screened`` are screening findings (``name``, ``confidence``, ``suppressed``, ``calibrated``);
    suppressed ones are left out. ``operating_points``: triage label -> threshold (default 0.5).
    """
    ops = operating_points or {}
    items = [
        ReportFinding(n, float(p), "triage", threshold=ops.get(n, DEFAULT_OPERATING_POINT))
        for n, p in zip(labels, probs, strict=True)
    ]
    covered = set(labels)
    return items + [
        ReportFinding(
            f.name,
            float(f.confidence),
            "zero-shot",
            threshold=zero_shot_operating_point(bool(getattr(f, "calibrated", True))),
        )
        for f in screened
        if not f.suppressed and f.name not in covered
    ]


def code_for(name: str, display: str | None = None) -> dict[str, Any]:
    """The CodeableConcept of a finding: SNOMED CT where mapped, else the local code system."""
    if name in SNOMED_CODES:
        code, disp = SNOMED_CODES[name]
        return {"coding": [{"system": SNOMED, "code": code, "display": disp}], "text": display or disp}
    return {
        "coding": [{"system": LOCAL_SYSTEM, "code": name, "display": display or name.replace("_", " ")}],
        "text": display or name,
    }


def conclusion_text(findings: Sequence[ReportFinding], models: Sequence[ModelIdentity]) -> str:
    """One sentence a clinician reads at a glance (see the module docstring)."""
    who = ", ".join(m.label for m in models[:1]) or "radclip"
    present = sorted((f for f in findings if f.present), key=lambda f: -f.confidence)
    n_other = len(findings) - len(present)
    if not present:
        return f"AI triage ({who}): no finding above threshold ({len(findings)} checked)."
    listed = ", ".join(f"possible {f.words} ({f.confidence:.2f})" for f in present)
    return f"AI triage ({who}): {listed}. No other finding above threshold ({n_other} checked)."


def _validated(resource: dict[str, Any]) -> dict[str, Any]:
    from radclip.integrations.fhir_client import validate_resource

    return validate_resource(resource)


def subject_reference(context: PatientStudyContext, options: ReportOptions) -> dict[str, Any] | None:
    """The patient as a logical reference by identifier (MRN); never ``Patient/<MRN>``."""
    if not context.patient_id:
        return None
    ident = {"value": context.patient_id, **({"system": options.mrn_system} if options.mrn_system else {})}
    return {"identifier": ident}


def _observation(
    f: ReportFinding, subject: Any, study_uid: str | None, issued: str, components_model: list[Any]
) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": str(uuid.uuid4()),
        "meta": {"security": [AIAST]},
        "status": "preliminary",
        "category": [{"coding": [IMAGING]}],
        "code": code_for(f.name, f.display),
        "valueBoolean": f.present,
        "component": [
            {
                "code": {"text": "confidence"},
                "valueQuantity": {"value": round(float(f.confidence), 4), "unit": "1"},
            },
            {
                "code": {"text": "operating point"},
                "valueQuantity": {"value": round(float(min(f.threshold, 1.0)), 4), "unit": "1"},
            },
            {"code": {"text": "method"}, "valueString": f.source},
            *components_model,
        ],
        "issued": issued,
    }
    if subject:
        obs["subject"] = subject
    if study_uid:
        obs["derivedFrom"] = [{"identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{study_uid}"}}]
    return _validated(obs)


def _panel(members: Sequence[dict[str, Any]], summary: str, subject: Any, issued: str) -> dict[str, Any]:
    panel: dict[str, Any] = {
        "resourceType": "Observation", "id": str(uuid.uuid4()), "meta": {"security": [AIAST]}, "status": "preliminary",
        "category": [{"coding": [IMAGING]}], "issued": issued, "valueString": summary,
        "code": {"coding": [{"system": LOCAL_SYSTEM, "code": "below-threshold", "display": "Findings below their operating point"}]},
        "hasMember": [{"reference": f"urn:uuid:{m['id']}"} for m in members],
    }  # fmt: skip
    if subject:
        panel["subject"] = subject
    return _validated(panel)


RADIOLOGY = {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD", "display": "Radiology"}
IMAGING_STUDY_CODE = {"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}


def _report(
    present: Sequence[ReportFinding], results: Sequence[dict[str, Any]], conclusion: str,
    models: Sequence[ModelIdentity], stamp: str,
) -> dict[str, Any]:  # fmt: skip
    """The DiagnosticReport (not yet validated; subject and identifier are added by the caller)."""
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport", "id": str(uuid.uuid4()), "meta": {"security": [AIAST]},
        "status": "preliminary", "category": [{"coding": [RADIOLOGY]}],
        "code": {"coding": [IMAGING_STUDY_CODE], "text": "radclip chest X-ray AI triage"},
        "issued": stamp, "result": [{"reference": f"urn:uuid:{o['id']}"} for o in results], "conclusion": conclusion,
        "extension": [{"url": MODEL_EXT, "valueString": f"{m.role}={m.name}@{m.version}"} for m in models],
    }  # fmt: skip
    coded = [code_for(f.name)["coding"][0] for f in present if f.name in SNOMED_CODES]
    if coded:
        report["conclusionCode"] = [{"coding": [c], "text": c["display"]} for c in coded]
    return report


def build_readable_report(
    findings: Sequence[ReportFinding],
    context: PatientStudyContext,
    models: Sequence[ModelIdentity],
    options: ReportOptions | None = None,
    issued: dt.datetime | None = None,
) -> dict[str, Any]:
    """A ``collection`` Bundle: the DiagnosticReport, its Observations, the Devices, the Provenance (validated)."""
    options = options or ReportOptions()
    now = issued or dt.datetime.now(dt.UTC)
    stamp = now.isoformat()
    subject = subject_reference(context, options)
    uid = context.study_instance_uid
    components_model = [
        {"code": {"text": f"model-version:{m.role}"}, "valueString": f"{m.name}@{m.version}"} for m in models
    ]
    present = [f for f in findings if f.present]
    observations = [
        _observation(f, subject, uid, stamp, components_model)
        for f in sorted(present, key=lambda f: -f.confidence)
    ]
    conclusion = conclusion_text(findings, models)
    results = list(observations)
    members: list[dict[str, Any]] = []
    if options.detail:
        members = [_observation(f, subject, uid, stamp, components_model) for f in findings if not f.present]
        results.append(_panel(members, conclusion, subject, stamp))
    report = _report(present, results, conclusion, models, stamp)
    if subject:
        report["subject"] = subject
    if uid:
        report["identifier"] = [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}]
    report = _validated(report)
    devices = [_validated(device_resource(m, str(uuid.uuid4()))) for m in models]
    generated = [report, *results, *members]
    provenance = provenance_resource(
        str(uuid.uuid4()),
        [f"urn:uuid:{r['id']}" for r in generated],
        [f"urn:uuid:{d['id']}" for d in devices],
        now,
    )
    resources = [*generated, *devices, _validated(provenance)]
    entries = [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources]
    return _validated({"resourceType": "Bundle", "type": "collection", "entry": entries})


def build_report_bundle(
    findings: Sequence[ReportFinding],
    context: PatientStudyContext,
    model_versions: dict[str, str],
    threshold: float = DEFAULT_OPERATING_POINT,
    issued: dt.datetime | None = None,
) -> dict[str, Any]:
    """Every finding as an Observation, the patient as ``Patient/<context.patient_id>``: the service's
    ``/screen?format=fhir`` answer, where the caller sent the FHIR Patient (so its id is a server id).

    The PACS path uses :func:`build_readable_report` instead.
    """
    stamp = (issued or dt.datetime.now(dt.UTC)).isoformat()
    subject = {"reference": f"Patient/{context.patient_id}"} if context.patient_id else None
    components_model = [
        {"code": {"text": f"model-version:{role}"}, "valueString": v}
        for role, v in sorted(model_versions.items())
    ]
    observations = [_observation(ReportFinding(f.name, f.confidence, f.source, f.display, threshold), subject,
                                 context.study_instance_uid, stamp, components_model) for f in findings]  # fmt: skip
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport", "id": str(uuid.uuid4()), "meta": {"security": [AIAST]}, "status": "preliminary",
        "category": [{"coding": [RADIOLOGY]}], "code": {"coding": [IMAGING_STUDY_CODE], "text": "radclip chest X-ray AI screening"},
        "issued": stamp, "result": [{"reference": f"urn:uuid:{o['id']}"} for o in observations],
        "conclusion": "AI-generated preliminary findings; not a radiologist's report.",
        "extension": [{"url": MODEL_EXT, "valueString": f"{role}={v}"} for role, v in sorted(model_versions.items())],
    }  # fmt: skip
    if subject:
        report["subject"] = subject
    if context.study_instance_uid:
        report["identifier"] = [{"system": "urn:dicom:uid", "value": f"urn:oid:{context.study_instance_uid}"}]
    entries = [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in (_validated(report), *observations)]
    return _validated({"resourceType": "Bundle", "type": "collection", "entry": entries})
