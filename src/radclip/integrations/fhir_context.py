"""Patient and study context: from FHIR R4 ``Patient``/``ImagingStudy`` resources, or from the DICOM header.

Resources are validated with ``fhir.resources`` (its R4B models, wire-compatible with R4 for
these resources). The context feeds the clinical rules (age, sex, view) and the FHIR output.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from radclip.io.contract import ImageMeta

_SEX_FROM_GENDER = {"male": "M", "female": "F", "other": "O", "unknown": None}
_GENDER_FROM_SEX = {"M": "male", "F": "female", "O": "other"}


class FhirValidationError(ValueError):
    """A FHIR resource in the request is not valid R4."""


@dataclass(frozen=True)
class PatientStudyContext:
    patient_id: str | None = None
    sex: str | None = None  # "M" | "F" | "O"
    age_years: float | None = None
    birth_date: str | None = None  # YYYY-MM-DD
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    sop_instance_uid: str | None = None
    study_date: str | None = None  # YYYY-MM-DD
    modality: str | None = None
    view: str | None = None
    source: str = "none"  # "fhir", "dicom", "fhir+dicom" or "none"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def gender(self) -> str | None:
        return _GENDER_FROM_SEX.get(self.sex or "")


def _validate(resource: dict[str, Any], expected: str) -> Any:
    if not isinstance(resource, dict) or resource.get("resourceType") != expected:
        got = resource.get("resourceType") if isinstance(resource, dict) else type(resource).__name__
        raise FhirValidationError(f"expected a FHIR {expected} resource, got resourceType {got!r}; send a JSON object with \"resourceType\": \"{expected}\"")
    import importlib

    module = importlib.import_module(f"fhir.resources.R4B.{expected.lower()}")
    try:
        return getattr(module, expected).model_validate(resource)
    except Exception as exc:  # pydantic ValidationError; keep the first lines, they name the field
        first = "; ".join(str(exc).splitlines()[:3])
        raise FhirValidationError(f"invalid FHIR {expected}: {first}. Fix the named field (FHIR R4 {expected})") from None


def _dicom_date(value: str | None) -> str | None:
    """DICOM DA (YYYYMMDD) -> ISO; ``None`` for anything that is not a real calendar date."""
    if value and len(value) == 8 and value.isdigit():
        try:
            return dt.date(int(value[:4]), int(value[4:6]), int(value[6:])).isoformat()
        except ValueError:  # e.g. 20201399: the study date is unknown, not an error for the request
            return None
    return None


def _birth_date(value: dt.date | str) -> tuple[str, dt.date]:
    """A FHIR ``date`` (YYYY, YYYY-MM or YYYY-MM-DD) -> (as given, the date used for the age).

    A partial date stands for its whole period, so the age is taken from its middle (1 July of
    the year, the 15th of the month): at most half a year off for a year-only birthDate.
    """
    if isinstance(value, dt.date):
        return value.isoformat(), value
    parts = [int(x) for x in str(value).split("-")]
    try:
        if len(parts) == 1:
            return str(value), dt.date(parts[0], 7, 1)
        return str(value), dt.date(parts[0], parts[1], 15)
    except ValueError:
        raise FhirValidationError(f"invalid FHIR Patient.birthDate {value!r}; use YYYY, YYYY-MM or YYYY-MM-DD") from None


def _age_at(birth: dt.date, on: dt.date) -> float:
    return round((on - birth).days / 365.25, 1)


def context_from_fhir(patient: dict[str, Any] | None, study: dict[str, Any] | None, meta: ImageMeta | None = None) -> PatientStudyContext:
    """Validate the resources and merge them over the DICOM-derived context (FHIR wins where both speak)."""
    base = context_from_dicom(meta) if meta is not None else PatientStudyContext()
    fields = base.to_dict()
    if patient is not None:
        p = _validate(patient, "Patient")
        if p.gender is not None and p.gender not in _SEX_FROM_GENDER:
            raise FhirValidationError(f"invalid FHIR Patient.gender {p.gender!r}; use one of male, female, other, unknown")
        fields["patient_id"] = p.id or fields["patient_id"]
        fields["sex"] = _SEX_FROM_GENDER.get(p.gender or "unknown") or fields["sex"]
        if p.birthDate is not None:
            fields["birth_date"], born = _birth_date(p.birthDate)
            on = dt.date.fromisoformat(fields["study_date"]) if fields["study_date"] else dt.date.today()
            fields["age_years"] = max(_age_at(born, on), 0.0)
    if study is not None:
        s = _validate(study, "ImagingStudy")
        for ident in s.identifier or []:
            if ident.system == "urn:dicom:uid" and ident.value:
                fields["study_instance_uid"] = ident.value.removeprefix("urn:oid:")
        if s.series:
            fields["series_instance_uid"] = s.series[0].uid or fields["series_instance_uid"]
            fields["modality"] = s.series[0].modality.code or fields["modality"]
        if s.started is not None:
            fields["study_date"] = str(s.started)[:10]
    fields["source"] = "+".join(x for x in ("fhir" if (patient or study) else "", "dicom" if base.source == "dicom" else "") if x) or "none"
    return PatientStudyContext(**fields)


def context_from_dicom(meta: ImageMeta) -> PatientStudyContext:
    """Context from the DICOM header facts the loader extracted (PNG/JPEG give none of these)."""
    if meta.source_format != "dicom":
        return PatientStudyContext(view=meta.view_position, source="none")
    return PatientStudyContext(
        patient_id=meta.patient_id, sex=meta.patient_sex, age_years=meta.patient_age_years,
        study_instance_uid=meta.study_instance_uid, series_instance_uid=meta.series_instance_uid,
        sop_instance_uid=meta.sop_instance_uid, study_date=_dicom_date(meta.study_date),
        modality=meta.modality, view=meta.view_position, source="dicom",
    )
