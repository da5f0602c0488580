"""Leaks found in review: PHI in a served DICOM (de-identified unless the role may see PHI)."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("dicognito")


def _dicom_with_phi() -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID, meta.MediaStorageSOPClassUID = (
        ExplicitVRLittleEndian,
        DigitalXRayImageStorageForPresentation,
    )
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality, ds.ViewPosition = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
        "DX",
        "PA",
    )
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.InstitutionName = (
        "Doe^Secretia",
        "MRN-771204",
        "19510203",
        "St Elsewhere",
    )
    ds.add_new(0x00091010, "LO", "private-tag-payload")
    ds.set_pixel_data(
        np.random.default_rng(3).integers(0, 4096, (96, 96)).astype(np.uint16), "MONOCHROME2", 12
    )
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _wait_ready(server: Any) -> None:
    deadline = time.monotonic() + 120
    while httpx.get(f"{server.url}/readyz").json()["index"]["state"] != "ready":
        assert time.monotonic() < deadline, "index did not become ready"
        time.sleep(0.1)


PHI = (b"Doe^Secretia", b"MRN-771204", b"19510203", b"St Elsewhere", b"private-tag-payload")


def test_served_dicom_is_deidentified_unless_the_role_may_see_phi(live_server: Any) -> None:
    _wait_ready(live_server)
    original = _dicom_with_phi()
    r = httpx.post(
        f"{live_server.url}/api/v1/studies?study_id=deid-1",
        content=original,
        headers={"Content-Type": "application/dicom"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    served = httpx.get(f"{live_server.url}/api/v1/studies/deid-1/file")  # open local run: no PHI role
    assert served.status_code == 200 and served.headers["x-radclip-deidentified"] == "basic-profile"
    assert not [p for p in PHI if p in served.content]
    ds, orig = pydicom.dcmread(io.BytesIO(served.content)), pydicom.dcmread(io.BytesIO(original))
    assert (
        ds.PatientIdentityRemoved == "YES"
        and str(ds.PatientName) != "Doe^Secretia"
        and ds.PatientID != "MRN-771204"
    )
    assert np.array_equal(ds.pixel_array, orig.pixel_array)  # the pixels are the study's
    again = httpx.get(f"{live_server.url}/api/v1/studies/deid-1/file")
    assert pydicom.dcmread(io.BytesIO(again.content)).PatientID == ds.PatientID  # one patient, one fake

    access = live_server.server.config.app.state.radclip_access
    admin, reader = access.keys.create("phi-admin", "admin"), access.keys.create("phi-reader", "reader")
    access.phi_roles = frozenset({"admin"})  # RADCLIP_PHI_ROLES=admin
    full = httpx.get(f"{live_server.url}/api/v1/studies/deid-1/file", headers={"X-API-Key": admin})
    assert (
        full.status_code == 200 and full.content == original and "x-radclip-deidentified" not in full.headers
    )
    assert httpx.get(f"{live_server.url}/api/v1/whoami", headers={"X-API-Key": admin}).json()["phi"] is True
    limited = httpx.get(f"{live_server.url}/api/v1/studies/deid-1/file", headers={"X-API-Key": reader})
    assert limited.status_code == 200 and b"MRN-771204" not in limited.content
