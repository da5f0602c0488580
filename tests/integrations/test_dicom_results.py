"""DICOM results for PACS: a TID 1500 SR and a heat-map SC that pass dciodvfy, deterministic UIDs, C-STORE to Orthanc."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
from integration_servers import dciodvfy_errors, dicom_variant

from radclip.integrations.dicom_results import NOT_FOR_DIAGNOSIS, build_results
from radclip.integrations.fhir_provenance import ModelIdentity
from radclip.integrations.fhir_report import ReportFinding

MODELS = [ModelIdentity("triage", "radclip-mobilenetv2-nih", "0.1.0", "09" * 32)]
FINDINGS = [ReportFinding("Effusion", 0.81, "triage"), ReportFinding("Mass", 0.2, "triage"),
            ReportFinding("rib_fracture", 0.7, "zero-shot")]  # fmt: skip


def _values(ds: Any) -> list[tuple[str, Any]]:
    """(concept name meaning, value) of every SR content item, depth first."""
    out = []
    for item in ds.get("ContentSequence", []):
        name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
        if "MeasuredValueSequence" in item:
            out.append((name, float(item.MeasuredValueSequence[0].NumericValue)))
        elif "ConceptCodeSequence" in item:
            out.append((name, item.ConceptCodeSequence[0].CodeValue))
        elif "TextValue" in item:
            out.append((name, item.TextValue))
        out.extend(_values(item))
    return out


def test_sr_and_heatmap_are_valid_deterministic_and_in_the_source_study(
    real_dicom: Path, tmp_path: Path
) -> None:
    import pydicom

    source = pydicom.dcmread(real_dicom)
    overlay = np.full((256, 256, 3), 90, np.uint8)
    res = build_results(source, FINDINGS, MODELS, overlay, "Effusion 0.81 (above threshold 0.50)")
    again = build_results(source, FINDINGS, MODELS, overlay, "Effusion 0.81 (above threshold 0.50)")
    assert [d.SOPInstanceUID for d in res.datasets] == [d.SOPInstanceUID for d in again.datasets]
    other_model = [ModelIdentity("triage", "radclip-mobilenetv2-nih", "0.2.0", "0a" * 32)]
    assert (
        build_results(source, FINDINGS, other_model, overlay, "x").sr.SOPInstanceUID != res.sr.SOPInstanceUID
    )
    for ds in res.datasets:
        assert (
            ds.StudyInstanceUID == source.StudyInstanceUID
            and ds.SeriesInstanceUID != source.SeriesInstanceUID
        )
        assert ds.PatientID == source.PatientID
        path = tmp_path / f"{ds.Modality}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == [], path
    sr, sc = res.sr, res.heatmap
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33" and sr.SeriesInstanceUID != sc.SeriesInstanceUID
    values = _values(sr)
    assert ("Finding", "60046008") in values and ("Probability", 0.81) in values  # effusion, SNOMED CT, 0.81
    assert ("Finding", "rib_fracture") in values and ("Probability", 0.7) in values  # local code
    assert not any(v == "Mass" for _, v in values)  # below its operating point: not in the SR
    assert ("Algorithm Name", "radclip-mobilenetv2-nih") in values and (
        "Algorithm Version",
        "0.1.0",
    ) in values
    assert ("Algorithm Parameters", f"weights-sha256={'09' * 32}") in values
    assert sr.CompletionFlag == "COMPLETE" and sr.VerificationFlag == "UNVERIFIED"
    assert sc.BurnedInAnnotation == "YES" and NOT_FOR_DIAGNOSIS in sc.SeriesDescription
    pixels = sc.pixel_array
    assert pixels.shape == (256, 256, 3) and (pixels[:12] == 255).any() and (pixels[200:] == 90).all()


def test_no_finding_above_threshold_says_so(real_dicom: Path) -> None:
    import pydicom

    res = build_results(pydicom.dcmread(real_dicom), [ReportFinding("Mass", 0.2, "triage")], MODELS, None, "")
    assert res.heatmap is None
    assert ("Finding", "373572006") in _values(res.sr)  # SCT "Clinical finding absent"
    assert not any(name == "Probability" for name, _ in _values(res.sr))


def _instances(orthanc: Any, study_uid: str) -> list[str]:
    found = httpx.post(
        f"{orthanc.http}/tools/find", json={"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}}
    ).json()
    return sorted(found)


def test_c_store_to_orthanc_is_idempotent_and_survives_an_outage(
    real_dicom: Path, orthanc: Any, tmp_path: Path
) -> None:
    from radclip.integrations.dicom_return import AeAddress, DicomReturn
    from radclip.integrations.processing import ProcessedStudy

    ds = dicom_variant(real_dicom, "radclip-sr-1", sop_suffix="71", study_suffix="71")
    src = tmp_path / "src.dcm"
    ds.save_as(src, enforce_file_format=True)
    processed = ProcessedStudy(str(ds.StudyInstanceUID), str(ds.SOPInstanceUID), None, {}, report_items=FINDINGS,
                               models=MODELS, heatmap=np.full((128, 128, 3), 60, np.uint8), heatmap_caption="Effusion 0.81")  # fmt: skip
    down = DicomReturn(
        tmp_path / "home", AeAddress("ORTHANC", "127.0.0.1", orthanc.dicom_port + 1)
    )  # nothing listens
    uids = down.submit(src.read_bytes(), processed)
    assert len(uids) == 2 and len(down.pending()) == 2 and down.sent == 0  # kept for later
    up = DicomReturn(tmp_path / "home", AeAddress("ORTHANC", "127.0.0.1", orthanc.dicom_port))
    assert up.flush() == 0 and up.sent == 2 and up.pending() == []
    stored = _instances(orthanc, str(ds.StudyInstanceUID))
    assert len(stored) == 2
    assert up.submit(src.read_bytes(), processed) == uids  # the same image again: same UIDs, nothing new
    assert _instances(orthanc, str(ds.StudyInstanceUID)) == stored
    tags = [httpx.get(f"{orthanc.http}/instances/{i}/simplified-tags").json() for i in stored]
    assert sorted(t["SOPInstanceUID"] for t in tags) == sorted(uids)
    assert {t["Modality"] for t in tags} == {"SR", "OT"}


def test_stow_rs_to_orthanc(real_dicom: Path, orthanc: Any, tmp_path: Path) -> None:
    from radclip.integrations.dicom_return import DicomReturn
    from radclip.integrations.processing import ProcessedStudy

    ds = dicom_variant(real_dicom, "radclip-sr-2", sop_suffix="72", study_suffix="72")
    src = tmp_path / "src.dcm"
    ds.save_as(src, enforce_file_format=True)
    processed = ProcessedStudy(
        str(ds.StudyInstanceUID), str(ds.SOPInstanceUID), None, {}, report_items=FINDINGS, models=MODELS
    )
    stow = DicomReturn(tmp_path / "home", orthanc.dicomweb)
    (uid,) = stow.submit(src.read_bytes(), processed)  # no heat map given: the SR alone
    assert stow.pending() == [] and len(_instances(orthanc, str(ds.StudyInstanceUID))) == 1
    assert httpx.get(f"{orthanc.dicomweb}/studies/{ds.StudyInstanceUID}/series").status_code == 200
    assert uid.startswith("2.25.")
