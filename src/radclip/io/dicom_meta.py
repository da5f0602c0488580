"""Facts read from a DICOM header into :class:`~radclip.io.contract.ImageMeta`.

Only the header is used (works on a dataset whose pixel data has not been decoded).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from radclip.io.contract import ImageMeta

# View positions of lateral projections; models are trained on frontal (PA/AP) views.
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLD", "RLD"})
_AGE_RE = re.compile(r"^\s*(\d{1,3})\s*([DWMY]?)\s*$", re.IGNORECASE)
_DAYS_PER_YEAR = 365.25
_AGE_UNIT_YEARS = {"D": 1 / _DAYS_PER_YEAR, "W": 7 / _DAYS_PER_YEAR, "M": 1 / 12, "Y": 1.0, "": 1.0}


def parse_age_string(value: Any) -> float | None:
    """DICOM AS ("061Y", "006M", "010W", "003D"; a bare "62" is read as years) -> years, else ``None``."""
    if value is None:
        return None
    match = _AGE_RE.match(str(value))
    if not match:
        return None
    return int(match.group(1)) * _AGE_UNIT_YEARS[match.group(2).upper()]


def _parse_da(value: Any) -> date | None:
    text = str(value or "").strip()
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def age_from_dates(birth: Any, study: Any) -> float | None:
    """Age in years at the study from two DA values (YYYYMMDD); ``None`` when either is unusable."""
    born, seen = _parse_da(birth), _parse_da(study)
    if born is None or seen is None or seen < born:
        return None
    return (seen - born).days / _DAYS_PER_YEAR


def _text(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None


def _spacing(ds: Any, extra: dict[str, Any]) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            if value is not None and len(value) == 2:
                extra["pixel_spacing_source"] = keyword
                return float(value[0]), float(value[1])
        except (TypeError, ValueError):
            continue
    return None


def _age(ds: Any, extra: dict[str, Any]) -> float | None:
    age = parse_age_string(ds.get("PatientAge"))
    if age is not None:
        extra["age_source"] = "PatientAge"
        return age
    age = age_from_dates(ds.get("PatientBirthDate"), ds.get("StudyDate") or ds.get("AcquisitionDate"))
    if age is not None:
        extra["age_source"] = "PatientBirthDate+StudyDate"
    return age


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):  # several values or text: the header fact is unknown, not fatal
        return None


def meta_from_dataset(ds: Any, *, photometric: str, windowing: str, shape: tuple[int, ...]) -> ImageMeta:
    """Build :class:`ImageMeta` from the header; notes on anything unusual go to ``extra["notes"]``."""
    notes: list[str] = []
    extra: dict[str, Any] = {"notes": notes}
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if uid is not None:
        extra["transfer_syntax"] = str(getattr(uid, "name", uid))
    modality = (_text(ds, "Modality") or "").upper() or None
    if modality is None:
        notes.append("no Modality in the header; read as a radiograph, check it is a chest X-ray")
    view = (_text(ds, "ViewPosition") or "").upper() or None
    if view in LATERAL_VIEWS:
        extra["lateral"] = True
        notes.append(f"lateral view ({view}); models are trained on frontal PA/AP views, results are less reliable")
    sex = (_text(ds, "PatientSex") or "").upper()[:1] or None
    bits = ds.get("BitsStored")
    return ImageMeta(
        source_format="dicom",
        photometric=photometric,
        original_shape=(int(shape[0]), int(shape[1])),
        bits_stored=_int_or_none(bits),
        pixel_spacing_mm=_spacing(ds, extra),
        view_position=view,
        modality=modality,
        patient_sex=sex if sex in ("M", "F", "O") else None,
        patient_age_years=_age(ds, extra),
        patient_id=_text(ds, "PatientID"),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        study_date=_text(ds, "StudyDate"),
        windowing=windowing,
        extra=extra,
    )
