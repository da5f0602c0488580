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


# The four leaks below were fixed in engine/study_index.py (no image_path in results), engine/corpus.py
# (manifest patient ids pseudonymised), engine/db.py (hide_parameters) and service/readiness.py.


def test_retrieval_results_carry_no_server_paths(live_server: Any) -> None:
    _wait_ready(live_server)
    r = httpx.post(
        f"{live_server.url}/api/v1/retrieve",
        json={"query": "pleural effusion", "top_k": 3},
        headers={
            "X-API-Key": live_server.server.config.app.state.radclip_access.keys.create(
                "leak-check", "reader"
            )
        },
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["results"]
    assert str(live_server.corpus) not in r.text and "image_path" not in r.text


def test_manifest_corpus_stores_patient_pseudonyms(tmp_path: Any) -> None:
    from radclip.engine.corpus import records_from_manifest

    (tmp_path / "m.csv").write_text(
        "image_id,path,patient_id,view,finding,source\nimg-1,a.png,MRN-555001,PA,No Finding,nih\n"
    )
    (record,) = records_from_manifest(tmp_path / "m.csv", tmp_path)
    assert record.patient_id != "MRN-555001" and str(record.patient_id).startswith("pid-")


def test_database_errors_do_not_carry_sql_parameters() -> None:
    import sqlalchemy as sa

    from radclip.engine import db

    engine = db.make_engine("sqlite://")
    with engine.begin() as conn:
        conn.execute(sa.text("create table t (study text unique)"))
        conn.execute(sa.text("insert into t values (:s)"), {"s": "1.2.840.MRN-555001"})
        with pytest.raises(sa.exc.IntegrityError) as info:
            conn.execute(sa.text("insert into t values (:s)"), {"s": "1.2.840.MRN-555001"})
    assert "MRN-555001" not in str(info.value)


def test_readyz_does_not_expose_exception_text(tmp_path: Any) -> None:
    from tests.service.access_helpers import access_client

    with access_client(tmp_path) as c:
        c.app.state.radclip.load_errors["clip"] = (
            f"FileNotFoundError: {tmp_path}/secret/path/model.safetensors"
        )
        body = c.get("/readyz").text
    assert "secret/path" not in body
