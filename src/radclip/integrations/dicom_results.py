"""Results as DICOM objects stored beside the original study: a TID 1500 Comprehensive SR and a heat-map image.

- **SR** (highdicom ``ComprehensiveSR``, TID 1500 "Imaging Measurement Report"): one TID 1501
  measurement group per finding at or above its operating point. Each group has the finding as
  its ``Finding`` type (SNOMED CT ``SCT`` where mapped, else the local scheme ``99RADCLIP``), a
  ``Probability`` (DCM 122157) measurement with the confidence, and an Algorithm
  Identification (TID 4019: model name, version, and parameters ``weights-sha256=…``,
  ``operating-point=…``). With no finding above threshold, one group says "Clinical finding
  absent" (SCT 373572006). The device observer is the triage model. TID 1500 rather than the
  Chest CAD SR: highdicom builds and checks TID 1500, and PACS viewers render it.
- **Heat map** (highdicom ``SCImage``, Secondary Capture, RGB): the triage model's class
  activation map of the top finding over the image, with "NOT FOR DIAGNOSTIC USE" burned in
  (``BurnedInAnnotation`` YES) and in the series description.

Both are in the source study (same StudyInstanceUID, patient module copied by highdicom), each
in a new series. Every UID is derived (``2.25`` UUID form) from the source SOP Instance UID
and the model versions, so the same image screened twice gives the same SOP Instance UIDs
and a PACS stores them once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from radclip.integrations.fhir_provenance import ModelIdentity
from radclip.integrations.fhir_report import SNOMED_CODES, ReportFinding

LOCAL_SCHEME = "99RADCLIP"  # private coding scheme designator for findings without a SNOMED CT code
MANUFACTURER = "radclip"
NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSTIC USE"
UID_NAMESPACE = __import__("uuid").UUID(
    "0c1f7a52-93f4-4c37-b1a5-6d1d0c2e7f41"
)  # radclip's namespace for derived UIDs
SR_SERIES_NUMBER, SC_SERIES_NUMBER = 9901, 9902  # high numbers: listed after the modality's own series


@dataclass(frozen=True)
class DicomResults:
    sr: Any  # pydicom Dataset (highdicom ComprehensiveSR)
    heatmap: Any | None  # pydicom Dataset (highdicom SCImage), None without a heat map

    @property
    def datasets(self) -> list[Any]:
        return [d for d in (self.sr, self.heatmap) if d is not None]


def derived_uid(*parts: str) -> str:
    """A deterministic UID (``2.25.<int>``, PS3.5 B.2) from ``parts``: the same inputs give the same UID."""
    import uuid

    return f"2.25.{uuid.uuid5(UID_NAMESPACE, '|'.join(parts)).int}"


def finding_code(f: ReportFinding) -> Any:
    from pydicom.sr.coding import Code

    if f.name in SNOMED_CODES:
        code, meaning = SNOMED_CODES[f.name]
        return Code(code, "SCT", meaning)
    return Code(f.name[:16], LOCAL_SCHEME, (f.display or f.name.replace("_", " "))[:64])


def _group(f: ReportFinding | None, model: ModelIdentity, source: Any, key: str) -> Any:
    import highdicom as hd
    from pydicom.sr.coding import Code

    params = [f"weights-sha256={model.sha256 or 'unknown'}"]
    if f is not None:
        params.append(f"operating-point={min(f.threshold, 1.0):.4f}; method={f.source}")
    algorithm = hd.sr.AlgorithmIdentification(
        name=model.name, version=model.version, parameters=params, manufacturer=MANUFACTURER
    )
    finding = finding_code(f) if f is not None else Code("373572006", "SCT", "Clinical finding absent")
    measurements = None
    if f is not None:
        probability = Code("122157", "DCM", "Probability")
        measurements = [
            hd.sr.Measurement(
                name=probability, value=round(float(f.confidence), 4), unit=Code("1", "UCUM", "no units")
            )
        ]
    label = f.name if f is not None else "no finding above threshold"
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid(key, "track", label), identifier=f"radclip {label}"[:64]
        ),
        finding_type=finding,
        algorithm_id=algorithm,
        measurements=measurements,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
    )


def build_sr(
    source: Any, findings: Sequence[ReportFinding], models: Sequence[ModelIdentity], key: str
) -> Any:
    """The TID 1500 Comprehensive SR for one screened image (see the module docstring)."""
    import highdicom as hd
    from pydicom.sr.coding import Code

    model = models[0]
    present = sorted((f for f in findings if f.present), key=lambda f: -f.confidence)
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derived_uid("device", model.name, model.version, model.sha256 or ""), name=model.name[:64],
        manufacturer_name=MANUFACTURER, model_name=f"{model.name} v{model.version}"[:64],
    )  # fmt: skip
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=Code("121007", "DCM", "Device"), observer_identifying_attributes=device))  # fmt: skip
    groups = [_group(f, model, source, key) for f in present] or [_group(None, model, source, key)]
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=Code("399208008", "SCT", "Plain chest X-ray"),
        imaging_measurements=groups,
    )
    sr = hd.sr.ComprehensiveSR(
        evidence=[source], content=report[0], series_instance_uid=derived_uid(key, "sr-series"),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=derived_uid(key, "sr"), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
        series_description="radclip AI triage (preliminary, not verified)",
    )  # fmt: skip
    sr.ManufacturerModelName = f"{model.name} {model.version}"[:64]
    return sr


def burn_in(rgb: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """``rgb`` (H, W, 3) uint8 with white text ``lines`` on a black band at the top."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    size = max(12, rgb.shape[1] // 32)
    try:
        font: Any = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        font = ImageFont.load_default()
    band = int(size * 1.3) * len(lines) + 8
    draw.rectangle([0, 0, rgb.shape[1], band], fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((6, 4 + i * int(size * 1.3)), line, fill=(255, 255, 255), font=font)
    return np.asarray(image)


def _orientation(source: Any) -> tuple[str, str]:
    """The source's PatientOrientation, else ("L", "F"): a frontal chest film as displayed (PA)."""
    value = tuple(str(v) for v in (source.get("PatientOrientation") or ()))
    return (value[0], value[1]) if len(value) == 2 else ("L", "F")


def build_heatmap(source: Any, overlay_rgb: np.ndarray, caption: str, key: str) -> Any:
    """The Secondary Capture of an overlay (H, W, 3 uint8) with the caption and the warning burned in."""
    import highdicom as hd

    pixels = burn_in(np.ascontiguousarray(overlay_rgb, dtype=np.uint8), [NOT_FOR_DIAGNOSIS, caption])
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=pixels, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", series_instance_uid=derived_uid(key, "heatmap-series"),
        series_number=SC_SERIES_NUMBER, sop_instance_uid=derived_uid(key, "heatmap"), instance_number=1,
        manufacturer=MANUFACTURER, patient_orientation=_orientation(source),
    )  # fmt: skip
    sc.Laterality = ""  # Type 2C in General Series: a chest film has no laterality; present, empty
    sc.BurnedInAnnotation = "YES"
    sc.SeriesDescription = f"radclip heat map - {NOT_FOR_DIAGNOSIS}"
    sc.ImageComments = f"{NOT_FOR_DIAGNOSIS}. {caption}"[:10240]
    return sc


def _fix_patient_age(ds: Any) -> None:
    """Copy a valid Patient's Age (AS: ``nnnD|W|M|Y``); a bare number of years (``62``, seen in practice) becomes ``062Y``."""
    import re

    age = str(ds.get("PatientAge") or "")
    if age and not re.fullmatch(r"\d{3}[DWMY]", age):
        if age.isdigit() and len(age) <= 3:
            ds.PatientAge = f"{int(age):03d}Y"
        else:
            del ds.PatientAge


def build_results(source: Any, findings: Sequence[ReportFinding], models: Sequence[ModelIdentity],
                  overlay_rgb: np.ndarray | None, caption: str) -> DicomResults:  # fmt: skip
    """SR and heat map for the source image ``source`` (a pydicom Dataset, header enough)."""
    import warnings

    versions = ",".join(f"{m.role}={m.name}@{m.version}" for m in models)
    key = f"{source.SOPInstanceUID}|{versions}"
    with (
        warnings.catch_warnings()
    ):  # highdicom warns about single-component PatientName values: the PACS's data
        warnings.filterwarnings("ignore", message=".*person name.*", category=UserWarning)
        heat = build_heatmap(source, overlay_rgb, caption, key) if overlay_rgb is not None else None
        results = DicomResults(build_sr(source, findings, models, key), heat)
    for ds in results.datasets:
        _fix_patient_age(ds)
    return results
