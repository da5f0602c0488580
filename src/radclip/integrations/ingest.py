"""One received DICOM image -> screened, indexed, queued for FHIR; or quarantined, never dropped.

Shared by both ingestion paths (the C-STORE SCP and the DICOMweb sync). Bad input (any
``RadclipInputError`` from the loader) and processing failures are written, bytes as
received, to ``$RADCLIP_HOME/quarantine/<SOPInstanceUID>.dcm`` with a ``.json`` sidecar
(reason, source, time) and logged at ERROR with the SOP Instance UID. Log lines name
studies by DICOM UID and patients by pseudonym only (:mod:`radclip.integrations.phi`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radclip.integrations.delivery_queue import DeliveryQueue
from radclip.integrations.fhir_exchange import delivery_key, report_delivery
from radclip.integrations.processing import ProcessedStudy, StudyProcessor

log = logging.getLogger(__name__)
_SAFE = re.compile(r"[^0-9A-Za-z.\-]")


@dataclass(frozen=True)
class IngestResult:
    status: str  # "processed" | "quarantined"
    sop_instance_uid: str | None
    study_instance_uid: str | None = None
    processed: ProcessedStudy | None = None
    quarantine_path: Path | None = None
    reason: str | None = None  # why it was quarantined
    queued: bool = False  # a new FHIR delivery was queued (False: already queued before, or no queue)


def sniff_uids(data: bytes) -> tuple[str | None, str | None]:
    """(SOPInstanceUID, StudyInstanceUID) from a DICOM header, without decoding pixels; Nones when unreadable."""
    try:
        import pydicom

        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        return (str(ds.SOPInstanceUID) if "SOPInstanceUID" in ds else None,
                str(ds.StudyInstanceUID) if "StudyInstanceUID" in ds else None)  # fmt: skip
    except Exception:  # unreadable header: the caller names the file by its hash
        return None, None


class Ingestor:
    """See the module docstring. ``queue`` None: results are processed and indexed but not sent to FHIR."""

    def __init__(self, processor: StudyProcessor, home: Path, queue: DeliveryQueue | None = None,
                 max_pixels: int | None = None, on_result: Callable[[IngestResult], None] | None = None,
                 create_patient: bool = False, dicom_return: Any | None = None) -> None:  # fmt: skip
        self.processor = processor
        self.on_result = on_result  # called with every result (processed or quarantined), e.g. for metrics
        self.quarantine_dir = Path(home).expanduser() / "quarantine"
        self.queue = queue
        self.max_pixels = max_pixels
        self.create_patient = create_patient  # no Patient with the MRN: conditional create (RADCLIP_FHIR_CREATE_PATIENT)
        self.dicom_return = dicom_return  # dicom_return.DicomReturn: SR + heat map back to PACS; None: not sent
        self.counters: Counter[str] = Counter()  # processed / quarantined / queued: the ingestion metrics
        self._lock = threading.Lock()  # one image through the models at a time

    def quarantine(self, data: bytes, sop_uid: str | None, source_ref: str, reason: str) -> Path:
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        name = _SAFE.sub("_", sop_uid) if sop_uid else f"sha256-{hashlib.sha256(data).hexdigest()[:24]}"
        path = self.quarantine_dir / f"{name}.dcm"
        path.write_bytes(data)
        sidecar = {
            "sop_instance_uid": sop_uid,
            "source": source_ref,
            "reason": reason,
            "at": dt.datetime.now(dt.UTC).isoformat(),
        }
        path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2))
        self.counters["quarantined"] += 1
        log.error(
            "quarantined SOP Instance UID %s from %s: %s -> %s",
            sop_uid or "<unreadable>",
            source_ref,
            reason,
            path,
        )
        return path

    def ingest(self, data: bytes, source_ref: str, sop_uid_hint: str | None = None) -> IngestResult:
        """Decode, screen, index and queue one image (see the module docstring)."""
        from radclip.io.errors import RadclipInputError
        from radclip.io.loader import load_image

        sop_uid, study_uid = sniff_uids(data)
        sop_uid = sop_uid or sop_uid_hint
        try:
            loaded = load_image(data, max_pixels=self.max_pixels, filename_hint="received.dcm")
        except RadclipInputError as exc:
            path = self.quarantine(data, sop_uid, source_ref, f"{type(exc).__name__}: {exc}")
            return self._done(
                IngestResult("quarantined", sop_uid, study_uid, quarantine_path=path, reason=str(exc))
            )
        try:
            with self._lock:
                processed = self.processor.process(loaded, source_ref)
        except Exception as exc:  # model or index failure: keep the image for a re-run, say why
            log.exception("processing failed for SOP Instance UID %s", sop_uid)
            path = self.quarantine(
                data, sop_uid, source_ref, f"processing failed: {type(exc).__name__}: {exc}"
            )
            return self._done(
                IngestResult("quarantined", sop_uid, study_uid, quarantine_path=path, reason=str(exc))
            )
        queued = False
        if self.queue is not None:
            key = delivery_key(
                processed.study_instance_uid, processed.sop_instance_uid, processed.model_versions
            )
            tx = report_delivery(processed.bundle, processed.context, key, create_patient=self.create_patient)
            queued = self.queue.enqueue(key, tx, processed.study_instance_uid)
            self.counters["queued"] += int(queued)
        self.counters["processed"] += 1
        if self.dicom_return is not None:
            self._return_to_pacs(data, processed)
        top = ", ".join(f"{n}={c:.2f}" for n, c, _ in processed.findings[:3])
        log.info("screened SOP Instance UID %s (study %s, patient %s) from %s: %s%s", processed.sop_instance_uid,
                 processed.study_instance_uid, processed.patient_ref, source_ref, top, "" if queued else " (FHIR result already queued)")  # fmt: skip
        return self._done(
            IngestResult(
                "processed", sop_uid, processed.study_instance_uid, processed=processed, queued=queued
            )
        )

    def _return_to_pacs(self, data: bytes, processed: ProcessedStudy) -> None:
        """Build and send the SR and heat map; a failure is logged, never loses the screening result."""
        try:
            uids = self.dicom_return.submit(data, processed)  # type: ignore[union-attr]
            self.counters["dicom_results"] += len(uids)
        except Exception:  # a header highdicom cannot use: the FHIR result still goes out
            log.exception("DICOM results not built for SOP Instance UID %s", processed.sop_instance_uid)

    def _done(self, result: IngestResult) -> IngestResult:
        if self.on_result is not None:
            self.on_result(result)
        return result
