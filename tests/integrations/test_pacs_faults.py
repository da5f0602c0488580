"""Faults: FHIR server down (results queue, then deliver once), Orthanc restarting mid-sync, undecodable images."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from integration_servers import PHI_NAME, dicom_variant, free_port, make_patient, send_c_store, start_fhir


def _stack(pipeline: Any, tag: str) -> tuple[Any, Any]:
    from radclip.integrations.delivery_queue import DeliveryQueue
    from radclip.integrations.ingest import Ingestor

    queue = DeliveryQueue(pipeline.home / f"outbox-{tag}.db")
    return Ingestor(pipeline, pipeline.home, queue), queue


def test_fhir_outage_queues_then_delivers_exactly_once(
    pipeline: Any, real_dicom: Path, tmp_path: Path
) -> None:
    import pydicom

    from radclip.integrations.delivery_queue import DeliveryQueue
    from radclip.integrations.fhir_client import FhirClient, FhirClientConfig

    ingestor, queue = _stack(pipeline, "outage")
    patient_id = "radclip-fault-outage"
    ds = dicom_variant(real_dicom, patient_id, sop_suffix="5", study_suffix="55")
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    assert ingestor.ingest(data, "test").queued
    assert not ingestor.ingest(data, "test").queued  # same image + same models: one queued result
    assert pydicom.dcmread(path).PatientName == PHI_NAME

    port = free_port()  # nothing listens here yet: the server is "down"
    config = FhirClientConfig(f"http://127.0.0.1:{port}/fhir/R4", timeout_s=2, retries=2, backoff_s=0.01)
    with FhirClient(config) as client:
        down = queue.deliver_pending(client)
        assert (down.delivered, down.pending, down.server_down) == (0, 1, True)
        queue.close()
        queue = DeliveryQueue(queue.path)  # radclip restarted during the outage: the outbox is on disk
        assert queue.counts() == {"pending": 1, "delivered": 0, "failed": 0}
        assert (
            queue.rows()[0]["attempts"] == 1 and "failed after 3 attempt(s)" in queue.rows()[0]["last_error"]
        )
        server = start_fhir(port)  # the server comes back at the same address
        try:
            pid = make_patient(client, patient_id)
            up = queue.deliver_pending(client)
            assert (up.delivered, up.pending, up.server_down) == (1, 0, False)
            assert queue.deliver_pending(client).delivered == 0  # nothing left to send
            # a crash after the server accepted but before the row was marked: re-sending creates nothing new
            from radclip.integrations.fhir_exchange import deliver

            payload = json.loads(
                __import__("sqlite3").connect(queue.path).execute("SELECT payload FROM outbox").fetchone()[0]
            )
            deliver(client, payload)
            kinds = [e["resource"]["resourceType"] for e in payload["batch"]["entry"]]
            assert client.count("DiagnosticReport", {"patient": f"Patient/{pid}"}) == 1
            assert client.count("ImagingStudy", {"subject": f"Patient/{pid}"}) == 1
            assert client.count("Observation", {"subject": f"Patient/{pid}"}) == kinds.count("Observation")
            assert client.count("Provenance") == 1 and client.count("Device") == kinds.count("Device") == 2
        finally:
            server.stop()


def test_orthanc_restart_mid_sync_resumes_without_duplicates(
    pipeline: Any, orthanc: Any, fhir_server: Any, real_dicom: Path
) -> None:
    from radclip.integrations.dicomweb_sync import DicomWebSync, DicomWebUnavailable
    from radclip.integrations.fhir_client import FhirClient

    ingestor, queue = _stack(pipeline, "restart")
    patient_id = "radclip-fault-restart"
    datasets = [
        dicom_variant(real_dicom, patient_id, sop_suffix=str(i), study_suffix=f"6{i}") for i in range(3)
    ]
    assert send_c_store(datasets, orthanc.dicom_port, "ORTHANC") == [0, 0, 0]
    sync = DicomWebSync.for_home(orthanc.dicomweb, ingestor, pipeline.home / "sync-restart")
    seen: list[str] = []

    def stop_after_first(result: Any) -> None:
        seen.append(result.sop_instance_uid)
        if len(seen) == 1:
            orthanc.stop()  # the PACS goes away in the middle of the pass

    with pytest.raises(DicomWebUnavailable, match="unreachable"):
        sync.sync_once(on_instance=stop_after_first)
    assert sync.processed_count() == 1
    orthanc.restart()
    resumed = sync.sync_once(on_instance=lambda r: seen.append(r.sop_instance_uid))
    assert (resumed.instances_new, resumed.skipped) == (2, 1)
    assert sorted(seen) == sorted(str(d.SOPInstanceUID) for d in datasets)  # each exactly once
    assert sync.sync_once().instances_new == 0
    assert ingestor.counters["processed"] == 3 and queue.counts()["pending"] == 3
    with FhirClient(fhir_server.url) as client:
        pid = make_patient(client, patient_id)
        assert queue.deliver_pending(client).delivered == 3
        assert client.count("DiagnosticReport", {"patient": f"Patient/{pid}"}) == 3
    sync.close()


def _undecodable(real_dicom: Path, sop_suffix: str) -> Any:
    """The real DICOM (JPEG baseline) with its one pixel fragment replaced by a corrupt JPEG stream."""
    from pydicom.encaps import encapsulate

    ds = dicom_variant(real_dicom, "radclip-fault-bad", sop_suffix=sop_suffix)
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xe0" + b"\x13\x37" * 200])
    return ds


def test_undecodable_image_is_quarantined_with_its_sop_uid(
    pipeline: Any, real_dicom: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from radclip.integrations.pacs_scp import ScpConfig, StoreScp

    caplog.set_level(logging.INFO)
    ingestor, queue = _stack(pipeline, "quarantine")
    bad = _undecodable(real_dicom, "999")
    scp = StoreScp(ingestor, ScpConfig(ae_title="RADCLIP", port=free_port())).start()
    try:
        assert send_c_store([bad], scp.port, "RADCLIP") == [
            0xC000
        ]  # the sender is told radclip did not screen it
    finally:
        scp.stop()
    sop = str(bad.SOPInstanceUID)
    qfile = pipeline.home / "quarantine" / f"{sop}.dcm"
    assert qfile.is_file() and qfile.stat().st_size > 200  # the bytes as received, kept for an operator
    sidecar = json.loads(qfile.with_suffix(".json").read_text())
    assert sidecar["sop_instance_uid"] == sop and sidecar["source"].startswith(
        "c-store:RADCLIP_SCU@127.0.0.1"
    )
    errors = [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("radclip")
    ]
    assert any(sop in m and "quarantined" in m for m in errors)
    assert PHI_NAME not in caplog.text
    assert (
        ingestor.counters["quarantined"] == 1
        and ingestor.counters["processed"] == 0
        and queue.counts()["pending"] == 0
    )

    # not DICOM at all: named by its hash, still quarantined and logged
    result = ingestor.ingest(b"this is not an image", "test", sop_uid_hint=None)
    assert (
        result.status == "quarantined"
        and result.quarantine_path is not None
        and result.quarantine_path.name.startswith("sha256-")
    )
