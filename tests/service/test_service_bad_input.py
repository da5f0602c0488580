"""Defects found in review, on a real server with tiny models: each answered 500 (or dropped data) before."""

from __future__ import annotations

import io
import json
import select
import socket
import threading
from collections import Counter
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

pydicom = pytest.importorskip("pydicom")


def _png(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(seed).random((96, 96)) * 255).astype(np.uint8), mode="L").save(
        buf, format="PNG"
    )
    return buf.getvalue()


def _dicom(compress: str | None = None, **attrs: Any) -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
        "DX",
    )
    ds.StudyInstanceUID = generate_uid()
    ds.set_pixel_data(
        np.random.default_rng(3).integers(0, 4096, (64, 64)).astype(np.uint16), "MONOCHROME2", 12
    )
    for key, value in attrs.items():
        setattr(ds, key, value)
    if compress:
        ds.compress(compress)
    bio = io.BytesIO()
    ds.save_as(bio, enforce_file_format=True)
    return bio.getvalue()


def _screen(url: str, data: bytes, fields: dict[str, str] | None = None) -> httpx.Response:
    if fields is None:
        return httpx.post(
            f"{url}/api/v1/screen", content=data, headers={"content-type": "application/dicom"}, timeout=120
        )
    return httpx.post(
        f"{url}/api/v1/screen", files={"file": ("x.dcm", data, "application/dicom")}, data=fields, timeout=120
    )


def _frames_abc() -> bytes:
    data, element = _dicom(NumberOfFrames=7), b"\x28\x00\x08\x00IS\x02\x007 "
    assert data.count(element) == 1
    return data.replace(element, b"\x28\x00\x08\x00IS\x04\x00abc ")


def _two_rows() -> bytes:
    ds = pydicom.dcmread(io.BytesIO(_dicom()))
    ds.Rows = [64, 64]
    bio = io.BytesIO()
    ds.save_as(bio)
    return bio.getvalue()


@pytest.mark.parametrize(("build", "status", "words"), [(_frames_abc, 400, "NumberOfFrames"), (_two_rows, 400, "Rows holds 2 values")],
                         ids=["frames-abc", "rows-two-values"])  # fmt: skip
def test_malformed_dicom_headers_are_4xx(live_server, build, status: int, words: str) -> None:  # type: ignore[no-untyped-def]
    r = _screen(live_server.url, build())
    assert r.status_code == status and words in r.json()["detail"] and r.json()["fix"], r.text


def test_missing_pixel_plugin_is_415_naming_the_install(live_server, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from pydicom.pixels import get_decoder
    from pydicom.uid import RLELossless

    data = _dicom(compress=RLELossless)
    monkeypatch.setattr(get_decoder(RLELossless), "_available", {})  # the server runs in this process
    r = _screen(live_server.url, data)
    assert r.status_code == 415 and "pip install pylibjpeg" in r.json()["detail"], r.text


def test_fhir_partial_birth_date_and_invalid_study_date(live_server) -> None:  # type: ignore[no-untyped-def]
    patient = json.dumps({"resourceType": "Patient", "id": "p1", "birthDate": "1970"})
    dated = _dicom(StudyDate="20200101")
    r = _screen(live_server.url, dated, {"patient": patient})
    assert r.status_code == 200, r.text
    ctx = r.json()["study"]["context"]
    assert ctx["birth_date"] == "1970" and ctx["age_years"] == pytest.approx(
        49.5, abs=0.01
    )  # from 1970-07-01
    bad_date = _dicom(StudyDate="20201399")  # month 13: the study date is unknown, the age is taken today
    r = _screen(
        live_server.url,
        bad_date,
        {"patient": json.dumps({"resourceType": "Patient", "birthDate": "1950-01-01"})},
    )
    assert r.status_code == 200, r.text
    assert (
        r.json()["study"]["context"]["study_date"] is None and r.json()["study"]["context"]["age_years"] > 70
    )


def test_deeply_nested_patient_field_is_422(live_server) -> None:  # type: ignore[no-untyped-def]
    r = _screen(live_server.url, _dicom(), {"patient": "[" * 200_000 + "]" * 200_000})
    assert r.status_code == 422 and "nested too deeply" in r.json()["detail"], r.text


def test_chunked_multipart_is_refused_while_it_streams(live_server) -> None:  # type: ignore[no-untyped-def]
    """No Content-Length: the server must stop reading soon after the 2 MB limit, not take all 64 MB first."""
    boundary = "b0undary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.dcm"\r\nContent-Type: application/dicom\r\n\r\n'
    sock = socket.create_connection(("127.0.0.1", live_server.port), timeout=30)
    sock.sendall((f"POST /api/v1/screen HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n").encode())  # fmt: skip
    sent, block = 0, b"\0" * 65536
    sock.sendall(b"%x\r\n%s\r\n" % (len(head), head.encode()))
    try:
        while sent < 64_000_000:
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered
            sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
            sent += len(block)
        answer = sock.recv(4096)
    except (BrokenPipeError, ConnectionResetError):
        answer = b""
    finally:
        sock.close()
    assert sent < 16_000_000, f"the server read {sent:,} bytes of a chunked upload before refusing it"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_synonyms_are_bounded_in_the_schema(live_server) -> None:  # type: ignore[no-untyped-def]
    base = {"name": "test_bounded_synonyms", "prompts": ["a rib fracture on the film"], "category": "osseous"}
    for synonyms in (["x" * 101], [f"s{i}" for i in range(33)]):
        r = httpx.post(
            f"{live_server.url}/api/v1/register-condition", json={**base, "synonyms": synonyms}, timeout=60
        )
        assert r.status_code == 422 and "synonyms" in r.json()["detail"], r.text
    ok = httpx.post(
        f"{live_server.url}/api/v1/register-condition", json={**base, "synonyms": ["x" * 100] * 1}, timeout=60
    )
    assert ok.status_code == 200, ok.text


def _parallel(n: int, fn) -> Counter:  # type: ignore[no-untyped-def,type-arg]
    out: Counter = Counter()  # type: ignore[type-arg]
    barrier = threading.Barrier(n)

    def run() -> None:
        barrier.wait()
        r = fn()
        out[(r.status_code, r.json().get("added", r.json().get("status")))] += 1

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _ready(url: str) -> None:
    import time

    deadline = time.monotonic() + 120
    while httpx.get(f"{url}/readyz").json()["index"]["state"] == "warming" and time.monotonic() < deadline:
        time.sleep(0.1)


def test_parallel_ingest_and_registration_never_500(live_server) -> None:  # type: ignore[no-untyped-def]
    _ready(live_server.url)
    png, headers = _png(seed=777), {"content-type": "image/png"}
    got = _parallel(
        6,
        lambda: httpx.post(
            f"{live_server.url}/api/v1/studies?study_id=race-1", content=png, headers=headers, timeout=120
        ),
    )
    assert got == Counter({(201, True): 1, (201, False): 5}), got
    body = {"name": "test_race_condition", "prompts": ["a new finding on the film", "another phrasing of it"]}
    got = _parallel(
        6, lambda: httpx.post(f"{live_server.url}/api/v1/register-condition", json=body, timeout=120)
    )
    assert got == Counter({(200, "registered"): 1, (200, "unchanged"): 5}), got


def test_a_lateral_after_the_pa_is_indexed(live_server) -> None:  # type: ignore[no-untyped-def]
    _ready(live_server.url)
    study = pydicom.uid.generate_uid()
    pa, lateral = (
        _dicom(StudyInstanceUID=study, ViewPosition="PA"),
        _dicom(StudyInstanceUID=study, ViewPosition="LL"),
    )
    headers = {"content-type": "application/dicom"}
    first = httpx.post(f"{live_server.url}/api/v1/studies", content=pa, headers=headers, timeout=120).json()
    second = httpx.post(
        f"{live_server.url}/api/v1/studies", content=lateral, headers=headers, timeout=120
    ).json()
    assert (first["study_id"], first["added"]) == (study, True)
    assert (second["study_id"], second["added"], second["status"]) == (
        study,
        True,
        "added",
    )  # was "already indexed"
    again = httpx.post(
        f"{live_server.url}/api/v1/studies", content=lateral, headers=headers, timeout=120
    ).json()
    assert again["added"] is False
