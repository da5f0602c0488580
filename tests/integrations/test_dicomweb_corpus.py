"""``radclip index dicomweb+http://…``: a real Orthanc's instances indexed as the folder of the same DICOM files is.

Five generated radiographs (two studies of two images, one of one) and one instance whose pixel data
is truncated are uploaded to Orthanc (DICOMweb plug-in, loopback); a sixth is listed and then deleted
before the build, so its WADO-RS fetch answers 404. The DICOMweb build (QIDO-RS listing, WADO-RS fetch,
radclip.io decode) must hold the same vectors (1e-6) for the same SOP Instance UIDs as the folder build
of the files, group images by StudyInstanceUID, pseudonymise PatientID, and quarantine the two bad
instances with their reasons. The Ray actor's batch function runs on the same records without a cluster.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from integration_servers import free_port

PATIENT = "MRN-DICOMWEB-0042"
STUDIES = [("1", 2), ("2", 2), ("3", 1)]  # (study suffix, images)


def _dicom(study: str, n: int, *, truncated: bool = False, modality: str = "DX") -> tuple[str, bytes]:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian

    root = "1.2.826.0.1.3680043.8.498.4242"
    meta = FileMetaDataset()
    meta.TransferSyntaxUID, meta.MediaStorageSOPClassUID = (
        ExplicitVRLittleEndian,
        DigitalXRayImageStorageForPresentation,
    )
    meta.MediaStorageSOPInstanceUID = f"{root}.{study}.1.{n}"
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
        modality,
    )
    ds.StudyInstanceUID, ds.SeriesInstanceUID = f"{root}.{study}", f"{root}.{study}.1"
    ds.PatientID, ds.PatientName, ds.StudyDate = PATIENT, "TEST^DICOMWEB", f"2026010{study}"
    ds.ViewPosition = "PA" if n == 1 else "LL"
    seed = int(study) * 10 + n
    ds.set_pixel_data(np.random.default_rng(seed).integers(0, 4096, (96, 96)).astype(np.uint16), "MONOCHROME2", 12,
                      generate_instance_uid=False)  # fmt: skip
    if truncated:
        ds.PixelData = ds.PixelData[:1000]  # the header promises 96x96 16-bit pixels: not decodable
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return str(ds.SOPInstanceUID), buf.getvalue()


def _upload(orthanc: Any, data: bytes) -> str:
    r = httpx.post(f"{orthanc.http}/instances", content=data, timeout=30)
    assert r.status_code == 200, r.text
    return str(r.json()["ID"])


@pytest.fixture
def served(orthanc: Any, tmp_path: Path) -> dict[str, Any]:
    """Orthanc holding the good and the truncated instance; the same files in a folder; the 'gone' instance's UID."""
    folder = tmp_path / "dicoms"
    folder.mkdir()
    files = [_dicom(s, n) for s, count in STUDIES for n in range(1, count + 1)]
    files.append(_dicom("4", 1, truncated=True))
    for sop, data in files:
        (folder / f"{sop}.dcm").write_bytes(data)
        _upload(orthanc, data)
    gone_sop, gone = _dicom("5", 1)
    gone_id = _upload(orthanc, gone)
    _upload(orthanc, _dicom("6", 1, modality="CT")[1])  # not a radiograph: not listed by default
    return {"folder": folder, "good": [s for s, _ in files[:-1]], "bad": files[-1][0], "gone": gone_sop,
            "gone_id": gone_id}  # fmt: skip


def _vectors_by_instance(index: Any, report: Any, root: Path) -> dict[str, np.ndarray]:
    from sqlalchemy import select

    from radclip.engine import db
    from radclip.engine.index import IndexStore

    loaded = IndexStore(root).load(report.key)
    assert loaded.index is not None, loaded.reason
    vectors, ids = loaded.index.vectors_and_ids()
    with index._sessions() as s:
        names = dict(s.execute(select(db.IndexItem.id, db.IndexItem.instance_id)).all())
    return {names[int(i)]: v for i, v in zip(ids, vectors, strict=True)}


@pytest.mark.slow
def test_dicomweb_build_equals_folder_build(
    orthanc: Any, served: dict[str, Any], tiny_models: tuple[Path, Path], tmp_path: Path
) -> None:
    from radclip.engine.corpus import records_from_folder
    from radclip.engine.encoders import default_image_embedder
    from radclip.engine.ray_corpus import EmbedActor, plan_shards
    from radclip.engine.study_index import StudyIndex
    from radclip.integrations.dicomweb_corpus import dicomweb_load_fn, records_from_dicomweb

    source = f"dicomweb+{orthanc.dicomweb}"
    records = records_from_dicomweb(source, pseudonymise=lambda v: f"pid-{len(v or '')}")
    assert len(records) == len(served["good"]) + 2
    assert len(records_from_dicomweb(source, pseudonymise=str, modalities=None)) == len(records) + 1  # + the CT
    again = records_from_dicomweb(source, pseudonymise=lambda v: f"pid-{len(v or '')}")
    assert [p.digest for p in plan_shards(records, 3, "m")] == [p.digest for p in plan_shards(again, 3, "m")]
    httpx.delete(
        f"{orthanc.http}/instances/{served['gone_id']}", timeout=30
    ).raise_for_status()  # listed, then gone

    by_sop = {r.instance_id: r for r in records}
    first = by_sop[served["good"][0]]
    assert (first.study_id, first.view, first.study_date, first.patient_id) == (
        "1.2.826.0.1.3680043.8.498.4242.1", "PA", "20260101", f"pid-{len(PATIENT)}")  # fmt: skip
    assert (
        len({r.study_id for r in records}) == len(STUDIES) + 2
    )  # two images in each of two studies share their id

    clip = str(tiny_models[1])
    embedder = default_image_embedder(clip)
    web = StudyIndex(embedder, f"sqlite:///{tmp_path / 'web.db'}", root=tmp_path / "web",
                     load_fn=dicomweb_load_fn(embedder.input_size))  # fmt: skip
    web_report = web.open(records)
    files = StudyIndex(embedder, f"sqlite:///{tmp_path / 'files.db'}", root=tmp_path / "files")
    file_report = files.open(records_from_folder(served["folder"]))

    assert web_report.embedded == file_report.embedded == len(served["good"])
    reasons = {Path(q["image_path"]).name: q["reason"] for q in web_report.quarantine}
    assert set(reasons) == {served["bad"], served["gone"]}
    assert "404" in reasons[served["gone"]] and "DicomWebUnavailable" in reasons[served["gone"]]
    assert [q["study_id"] for q in file_report.quarantine] == [served["bad"]]  # the same file fails from disk
    assert reasons[served["bad"]].split(":")[0] == file_report.quarantine[0]["reason"].split(":")[0]

    web_vecs = _vectors_by_instance(web, web_report, tmp_path / "web")
    file_vecs = _vectors_by_instance(files, file_report, tmp_path / "files")
    assert set(web_vecs) == set(file_vecs) == set(served["good"])
    for sop in served["good"]:
        np.testing.assert_allclose(web_vecs[sop], file_vecs[sop], atol=1e-6, rtol=0)
    assert (
        max(np.abs(web_vecs[a] - web_vecs[b]).max() for a in served["good"] for b in served["good"] if a != b)
        > 1e-3
    )

    # the Ray actor's batch function (what each actor runs), fed the same DICOMweb records, without a cluster
    actor = EmbedActor(lambda: default_image_embedder(clip), dicomweb_load_fn)
    paths = [r.image_path for r in records]
    out = actor(
        {
            "shard": np.zeros(len(paths), int),
            "pos": np.arange(len(paths)),
            "path": np.array(paths, dtype=object),
        }
    )
    for r, ok, reason, vec in zip(records, out["ok"], out["reason"], out["vector"], strict=True):
        if r.instance_id in served["good"]:
            assert ok and reason == ""
            np.testing.assert_allclose(vec, file_vecs[r.instance_id], atol=1e-6, rtol=0)
        else:
            assert not ok and reason == reasons[r.instance_id]


@pytest.mark.slow
def test_cli_indexes_a_dicomweb_server(
    orthanc: Any, served: dict[str, Any], tiny_models: tuple[Path, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from radclip.cli import main

    monkeypatch.setenv("RADCLIP_CLIP_MODEL", str(tiny_models[1]))
    args = [
        "index",
        f"dicomweb+{orthanc.dicomweb}",
        "--database",
        f"sqlite:///{tmp_path / 'cli.db'}",
        "--no-progress",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    out = json.loads(printed.strip().splitlines()[-1])
    assert PATIENT not in printed
    from sqlalchemy import create_engine, text

    with create_engine(f"sqlite:///{tmp_path / 'cli.db'}").connect() as conn:
        stored = conn.execute(text("select patient_id from index_items")).scalars().all()
    assert stored and all(p and p.startswith("pid-") and PATIENT not in p for p in stored)  # the keyed pseudonym
    assert (out["embedded"], out["failed"], out["loaded"]) == (
        len(served["good"]) + 1,
        1,
        False,
    )  # the gone one is there
    assert main(args) == 0  # a rerun over the same listing is a warm load: nothing fetched
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["loaded"] is True


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("dicomweb+http://127.0.0.1:{port}/dicom-web", "Check that the server is running"),
        ("http://127.0.0.1:{port}/dicom-web", "write dicomweb+http://"),
        ("dicomweb+ftp://pacs/dicom-web", "needs an http or https URL"),
        ("dicomweb+http:///dicom-web", "needs an http or https URL with a host"),
        ("dicomweb+http://admin:s3cret@127.0.0.1:{port}/dicom-web", "credentials in the DICOMweb URL are refused"),
    ],
)
def test_cli_bad_dicomweb_source_says_how_to_fix_it(
    source: str, expected: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from radclip.cli import main

    rc = main(
        [
            "index",
            source.format(port=free_port()),
            "--database",
            f"sqlite:///{tmp_path / 'x.db'}",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and expected in err and "Traceback" not in err, err
    assert "s3cret" not in err


def test_source_url_is_normalised() -> None:
    from radclip.integrations.dicomweb_corpus import instance_path, parse_source

    base = parse_source("dicomweb+HTTP://PACS.example:8042/dicom-web/")
    assert base == "http://pacs.example:8042/dicom-web"
    assert instance_path(base, "1", "2", "3") == "dicomweb+http://pacs.example:8042/dicom-web/studies/1/series/2/instances/3"


@pytest.mark.parametrize(
    ("status", "body", "down"),
    [(401, b"", True), (403, b"", True), (429, b"", True), (503, b"", True), (404, b"", False), (410, b"", False),
     (200, b"not multipart", False)],
)  # fmt: skip
def test_refusals_stop_the_build_and_one_bad_instance_is_quarantined(
    status: int, body: bytes, down: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refusal of the client (auth, rate limit) or a 5xx stops the build; a 404/410 or a malformed answer is that instance's."""
    from radclip.engine.study_index import ImageSourceDown
    from radclip.integrations import dicomweb_corpus
    from radclip.integrations.dicomweb_client import DicomWebClient, DicomWebUnavailable

    base = "http://pacs.test/dicom-web"
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body,
                                                                   headers={"content-type": "text/plain"}))  # fmt: skip
    monkeypatch.setitem(dicomweb_corpus._CLIENTS, base, DicomWebClient(base, transport=transport))
    path = dicomweb_corpus.instance_path(base, "1.2", "1.2.3", "1.2.3.4")
    if down:
        with pytest.raises(ImageSourceDown, match=str(status)):
            dicomweb_corpus.fetch_instance(path)
    else:
        with pytest.raises(DicomWebUnavailable) as info:
            dicomweb_corpus.fetch_instance(path)
        assert not isinstance(info.value, ImageSourceDown) and not info.value.server_down


def test_qido_paging_refuses_a_server_that_ignores_offset() -> None:
    """A server answering the same full page for every offset would list forever; it is refused with the fix."""
    from radclip.integrations.dicomweb_client import DicomWebClient, DicomWebUnavailable

    page = [{"0020000D": {"vr": "UI", "Value": [f"1.2.{i}"]}} for i in range(3)]
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=page))
    client = DicomWebClient("http://pacs.test/dicom-web", page_size=3, transport=transport)
    with pytest.raises(DicomWebUnavailable, match="ignores offset"):
        client.study_rows()
    # a server that pages properly: 3 + 3 + 1 rows
    rows = [{"0020000D": {"vr": "UI", "Value": [f"1.2.{i}"]}} for i in range(7)]

    def paged(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        return httpx.Response(200, json=rows[offset : offset + 3])

    assert len(DicomWebClient("http://pacs.test/dicom-web", page_size=3, transport=httpx.MockTransport(paged)).study_rows()) == 7


def test_server_down_mid_build_stops_it_instead_of_quarantining(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    """A listed instance whose server no longer answers: the build raises ImageSourceDown and writes nothing."""
    from radclip.engine.encoders import default_image_embedder
    from radclip.engine.study_index import ImageSourceDown, StudyIndex, StudyRecord
    from radclip.integrations.dicomweb_corpus import dicomweb_load_fn, instance_path

    path = instance_path(f"http://127.0.0.1:{free_port()}/dicom-web", "1.2.3", "1.2.3.4", "1.2.3.4.5")
    record = StudyRecord(study_id="1.2.3", image_path=path, instance_id="1.2.3.4.5")
    embedder = default_image_embedder(str(tiny_models[1]))
    index = StudyIndex(embedder, f"sqlite:///{tmp_path / 'down.db'}", root=tmp_path / "down",
                       load_fn=dicomweb_load_fn(embedder.input_size))  # fmt: skip
    with pytest.raises(ImageSourceDown, match="rerun radclip index once"):
        index.open([record])
    assert not list((tmp_path / "down").glob("*.manifest.json"))  # nothing persisted: the rerun builds it
