"""SIGKILL the FHIR server in the middle of a stream of studies, then bring it back.

Screening goes on while it is down (results wait in the outbox); the delivery worker sends them once
it is back, without a restart of radclip; every result is delivered once (0 lost, 0 duplicated).
The test server keeps resources in memory, so what it held before the kill is counted before the kill.
"""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path
from typing import Any

from integration_servers import dicom_variant, start_fhir

BEFORE, DURING = 3, 4  # studies delivered before the kill, and screened while the server is down


def _bytes(ds: Any) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _wait(predicate: Any, timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return bool(predicate())


def test_fhir_killed_mid_stream_loses_and_duplicates_no_result(pipeline: Any, real_dicom: Path) -> None:
    from radclip.integrations.delivery_queue import DeliveryQueue, DeliveryWorker
    from radclip.integrations.fhir_client import FhirClient, FhirClientConfig
    from radclip.integrations.ingest import Ingestor

    server = start_fhir()
    queue = DeliveryQueue(pipeline.home / "outbox-fhir-kill.db")
    ingestor = Ingestor(pipeline, pipeline.home, queue, create_patient=True)
    config = FhirClientConfig(server.url, timeout_s=3, retries=1, backoff_s=0.05)
    studies = [dicom_variant(real_dicom, f"radclip-fhir-kill-{i // BEFORE}", sop_suffix=f"31{i}", study_suffix=f"31{i}")
               for i in range(BEFORE + DURING)]  # fmt: skip
    with FhirClient(config) as client:
        worker = DeliveryWorker(queue, client, interval_s=0.5).start()
        try:
            for ds in studies[:BEFORE]:
                assert ingestor.ingest(_bytes(ds), "test").queued
            assert _wait(lambda: queue.counts()["delivered"] == BEFORE)
            held_before = client.count("DiagnosticReport")
            os.kill(server.pid, signal.SIGKILL)  # the FHIR server dies mid-stream
            for ds in studies[BEFORE:]:
                result = ingestor.ingest(_bytes(ds), "test")  # screening does not need FHIR
                assert result.status == "processed" and result.queued
            time.sleep(1.5)  # a few delivery passes fail against the dead server
            down = queue.counts()
            assert (down["pending"], down["failed"]) == (DURING, 0), down
            server = start_fhir(server.port)  # back at the same address, empty (in-memory)
            assert _wait(lambda: queue.counts()["delivered"] == BEFORE + DURING), queue.counts()
            held_after = client.count("DiagnosticReport")
        finally:
            worker.stop()
            server.stop()
    counts = queue.counts()
    print(f"fhir fault: {len(studies)} studies screened; delivered before the kill {held_before}, after it "
          f"{held_after}; outbox {counts}; lost {len(studies) - held_before - held_after}, "
          f"duplicated {max(0, held_before + held_after - len(studies))}")  # fmt: skip
    assert (held_before, held_after) == (BEFORE, DURING)
    assert counts == {"pending": 0, "delivered": BEFORE + DURING, "failed": 0}
    assert ingestor.counters["processed"] == BEFORE + DURING
    queue.close()
