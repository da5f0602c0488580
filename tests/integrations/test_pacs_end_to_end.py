"""End to end: a real DICOM into radclip (C-STORE SCP, or Orthanc + DICOMweb sync) -> FHIR server -> retrieval index."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from integration_servers import MRN_SYSTEM, PHI_NAME, dicom_variant, free_port, make_patient, send_c_store


def _ingest_stack(pipeline: Any, tag: str, results: list[Any] | None = None) -> tuple[Any, Any]:
    from radclip.integrations.delivery_queue import DeliveryQueue
    from radclip.integrations.ingest import Ingestor

    queue = DeliveryQueue(pipeline.home / f"outbox-{tag}.db")
    return Ingestor(
        pipeline, pipeline.home, queue, on_result=None if results is None else results.append
    ), queue


def _confidence(obs: dict[str, Any]) -> float:
    return next(
        c["valueQuantity"]["value"] for c in obs["component"] if c["code"].get("text") == "confidence"
    )


def test_scp_screens_delivers_and_indexes(
    pipeline: Any, fhir_server: Any, real_dicom: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from radclip.integrations.fhir_client import FhirClient
    from radclip.integrations.fhir_report import SNOMED_CODES
    from radclip.integrations.pacs_scp import ScpConfig, StoreScp
    from radclip.io.contract import to_contract_tensor
    from radclip.io.loader import load_image

    caplog.set_level(logging.DEBUG)
    caplog.set_level(
        logging.DEBUG, logger="pynetdicom"
    )  # `radclip pacs` mutes it; this test reads its records
    results: list[Any] = []
    ingestor, queue = _ingest_stack(pipeline, "scp", results)
    patient_id = "radclip-e2e-scp"
    ds = dicom_variant(real_dicom, patient_id, sop_suffix="77", study_suffix="77")
    scp = StoreScp(ingestor, ScpConfig(ae_title="RADCLIP", port=free_port())).start()
    try:
        assert send_c_store([ds], scp.port, "RADCLIP") == [0x0000]
    finally:
        scp.stop()
    assert ingestor.counters["processed"] == 1 and queue.counts()["pending"] == 1

    with FhirClient(fhir_server.url) as client:
        pid = make_patient(client, patient_id)  # the MRN lives in Patient.identifier; the server id differs
        stats = queue.deliver_pending(client)
        assert (stats.delivered, stats.pending, stats.server_down) == (1, 0, False)
        reports = client.search("DiagnosticReport", {"patient": f"Patient/{pid}"})
        assert len(reports) == 1
        report = reports[0]
        assert report["subject"] == {"reference": f"Patient/{pid}", "identifier": {"system": MRN_SYSTEM, "value": patient_id}}
        # the link to the study: an ImagingStudy carrying the DICOM StudyInstanceUID
        study = client.read(*report["imagingStudy"][0]["reference"].split("/"))
        assert study["identifier"][0]["value"] == f"urn:oid:{ds.StudyInstanceUID}"
        assert client.search("ImagingStudy", {"subject": f"Patient/{pid}"})[0]["id"] == study["id"]
        # golden check: the triage Observations are exactly the labels an independent run of the model puts at or
        # above the operating point (0.5: the tiny card ships none), with their confidences (4 decimals)
        observations = client.search("Observation", {"subject": f"Patient/{pid}"})
        assert len(observations) == len(report["result"])
        by_name = {(o["code"]["coding"][0]["code"], next(c["valueString"] for c in o["component"] if c["code"]["text"] == "method")): o
                   for o in observations}  # fmt: skip
        triage = pipeline.parts.triage
        expected = triage.run(to_contract_tensor(load_image(real_dicom).pixels, triage.input_size)).probs
        present = {SNOMED_CODES.get(label, (label,))[0]: float(p) for label, p in zip(triage.labels, expected, strict=True) if p >= 0.5}
        assert {code for code, method in by_name if method == "triage"} == set(present)
        for code, prob in present.items():
            assert abs(_confidence(by_name[(code, "triage")]) - round(prob, 4)) < 1e-9
        assert all(o["valueBoolean"] is True and _confidence(o) >= 0.5 for o in observations)
        n_checked = len(results[0].processed.findings) - len(observations)
        assert report["conclusion"].startswith("AI triage (tiny-triage vtest-0): ")
        assert report["conclusion"].endswith(f"({n_checked} checked).") and n_checked > 14
        # machine-generated, by which model: the Devices and the Provenance naming them as author
        (prov,) = client.search("Provenance", {"target": f"DiagnosticReport/{report['id']}"})
        devices = [client.read(*a["who"]["reference"].split("/")) for a in prov["agent"]]
        assert [d["deviceName"][0]["name"] for d in devices] == ["tiny-triage", "tiny-clip"]
        assert devices[0]["identifier"][0]["value"] == triage.card.weights_sha256

    # the retrieval index now finds the study, by its own image, with a pseudonymised patient id
    clip = pipeline.parts.clip
    emb = clip.encode_images(to_contract_tensor(load_image(real_dicom).pixels, clip.input_size)[None])
    hits = pipeline.parts.index.search(emb, k=3)[0]
    assert hits[0]["study_id"] == ds.StudyInstanceUID and hits[0]["similarity"] > 0.99
    assert hits[0]["patient_id"].startswith("pid-") and patient_id not in str(hits[0])
    # PHI: the name never reaches logs, metrics or retrieval metadata; the raw patient id never reaches logs
    assert "screened SOP Instance UID" in caplog.text
    for text in (caplog.text, str(dict(ingestor.counters)), str(hits)):
        assert PHI_NAME not in text and "DOE" not in text
    # the raw patient id: not in radclip's or pynetdicom's records (httpx logs request URLs; `radclip pacs` mutes it)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("radclip", "pynetdicom")))
    assert "quarantined" not in ours and patient_id not in ours


def test_orthanc_dicomweb_sync_processes_each_instance_once(
    pipeline: Any, orthanc: Any, fhir_server: Any, real_dicom: Path
) -> None:
    from radclip.integrations.dicomweb_sync import DicomWebSync
    from radclip.integrations.fhir_client import FhirClient

    ingestor, queue = _ingest_stack(pipeline, "sync")
    patient_id = "radclip-e2e-sync"
    datasets = [dicom_variant(real_dicom, patient_id, sop_suffix=str(i), study_suffix="88") for i in (1, 2)]
    assert send_c_store(datasets, orthanc.dicom_port, "ORTHANC") == [0, 0]
    sync = DicomWebSync.for_home(orthanc.dicomweb, ingestor, pipeline.home / "sync-e2e")
    first = sync.sync_once()
    assert (first.studies_seen, first.instances_new, first.quarantined) == (1, 2, 0)
    again = sync.sync_once()
    assert (again.instances_new, again.skipped) == (0, 2)
    # a new image arriving later in the same study is picked up on the next pass
    assert send_c_store(
        [dicom_variant(real_dicom, patient_id, sop_suffix="3", study_suffix="88")],
        orthanc.dicom_port,
        "ORTHANC",
    ) == [0]
    assert sync.sync_once().instances_new == 1
    with FhirClient(fhir_server.url) as client:
        pid = make_patient(client, patient_id)
        assert queue.deliver_pending(client).delivered == 3
        assert client.count("DiagnosticReport", {"patient": f"Patient/{pid}"}) == 3
        assert client.count("ImagingStudy", {"subject": f"Patient/{pid}"}) == 1  # one study, conditional create
    sync.close()
    assert np.isfinite(ingestor.counters["processed"]) and ingestor.counters["processed"] == 3
