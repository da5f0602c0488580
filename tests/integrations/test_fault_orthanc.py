"""SIGKILL Orthanc in the middle of a DICOMweb sync pass, then bring it back over the same storage.

The pass stops with DicomWebUnavailable (radclip stays up); the next pass resumes where it stopped;
every instance is screened and queued once (0 lost, 0 duplicated), without restarting radclip.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from integration_servers import dicom_variant, send_c_store

N = 4


def test_orthanc_killed_mid_sync_resumes_with_each_instance_once(
    pipeline: Any, orthanc: Any, real_dicom: Path
) -> None:
    from radclip.integrations.delivery_queue import DeliveryQueue
    from radclip.integrations.dicomweb_sync import DicomWebSync, DicomWebUnavailable
    from radclip.integrations.ingest import Ingestor

    queue = DeliveryQueue(pipeline.home / "outbox-orthanc-kill.db")
    ingestor = Ingestor(pipeline, pipeline.home, queue)
    datasets = [
        dicom_variant(real_dicom, "radclip-orthanc-kill", sop_suffix=f"41{i}", study_suffix=f"41{i}")
        for i in range(N)
    ]
    assert send_c_store(datasets, orthanc.dicom_port, "ORTHANC") == [0] * N
    sync = DicomWebSync.for_home(orthanc.dicomweb, ingestor, pipeline.home / "sync-orthanc-kill")
    seen: list[str] = []

    def kill_after_second(result: Any) -> None:
        seen.append(result.sop_instance_uid)
        if len(seen) == 2:
            os.kill(orthanc.pid, signal.SIGKILL)  # no shutdown: the PACS dies mid-pass

    with pytest.raises(DicomWebUnavailable, match="unreachable"):
        sync.sync_once(on_instance=kill_after_second)
    assert sync.processed_count() == 2
    orthanc.restart()  # same ports, same storage
    resumed = sync.sync_once(on_instance=lambda r: seen.append(r.sop_instance_uid))
    again = sync.sync_once()
    expected = sorted(str(d.SOPInstanceUID) for d in datasets)
    lost = sorted(set(expected) - set(seen))
    duplicated = len(seen) - len(set(seen))
    print(f"orthanc fault: {N} instances on the PACS; screened {len(set(seen))}, lost {len(lost)}, duplicated "
          f"{duplicated}; resumed pass: {resumed.instances_new} new, {resumed.skipped} skipped; outbox {queue.counts()}")  # fmt: skip
    assert (sorted(seen), resumed.instances_new, again.instances_new) == (expected, N - 2, 0)
    assert ingestor.counters["processed"] == N and queue.counts()["pending"] == N
    sync.close()
    queue.close()
