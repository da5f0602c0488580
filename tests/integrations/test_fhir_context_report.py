"""FHIR context in, DiagnosticReport out: validated resources and the fields the rules use."""

from __future__ import annotations

import pytest

from radclip.integrations.fhir_context import FhirValidationError, context_from_dicom, context_from_fhir
from radclip.integrations.fhir_report import SNOMED, ReportFinding, build_report_bundle
from radclip.io.contract import ImageMeta


def _meta(**kw):  # type: ignore[no-untyped-def]
    base = dict(source_format="dicom", photometric="MONOCHROME2", original_shape=(10, 10), patient_id="P1", patient_sex="F",
                patient_age_years=61.0, study_instance_uid="1.2.3", study_date="20200105", view_position="PA", modality="CR")
    base.update(kw)
    return ImageMeta(**base)


def test_context_from_dicom_header() -> None:
    ctx = context_from_dicom(_meta())
    assert (ctx.patient_id, ctx.sex, ctx.age_years, ctx.study_date, ctx.view, ctx.source) == ("P1", "F", 61.0, "2020-01-05", "PA", "dicom")


def test_fhir_patient_overrides_dicom_and_gives_age_at_study_date() -> None:
    patient = {"resourceType": "Patient", "id": "pat-9", "gender": "male", "birthDate": "1950-01-05"}
    ctx = context_from_fhir(patient, None, _meta())
    assert ctx.patient_id == "pat-9" and ctx.sex == "M"
    assert ctx.age_years == pytest.approx(70.0, abs=0.05)
    assert ctx.source == "fhir+dicom"


@pytest.mark.parametrize(
    ("patient", "fragment"),
    [
        ({"resourceType": "Observation"}, "expected a FHIR Patient"),
        ({"resourceType": "Patient", "birthDate": "not-a-date"}, "birthDate"),
        ({"resourceType": "Patient", "gender": "femalex"}, "gender"),
    ],
)
def test_invalid_patient_is_refused_with_the_field_named(patient, fragment) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FhirValidationError, match=fragment):
        context_from_fhir(patient, None)


def test_report_bundle_validates_and_codes_findings() -> None:
    ctx = context_from_dicom(_meta())
    bundle = build_report_bundle(
        [ReportFinding("Effusion", 0.8, "triage"), ReportFinding("pneumomediastinum", 0.2, "zero-shot")], ctx, {"triage": "v1", "clip": "v2"}
    )
    report, obs_eff, obs_pm = (e["resource"] for e in bundle["entry"])
    assert report["resourceType"] == "DiagnosticReport" and report["subject"]["reference"] == "Patient/P1"
    assert len(report["result"]) == 2
    assert obs_eff["code"]["coding"][0] == {"system": SNOMED, "code": "60046008", "display": "Pleural effusion"}
    assert obs_eff["valueBoolean"] is True and obs_pm["valueBoolean"] is False
    conf = [c for c in obs_eff["component"] if c["code"]["text"] == "confidence"][0]
    assert conf["valueQuantity"]["value"] == 0.8
    assert any(c.get("valueString") == "v1" for c in obs_eff["component"])
