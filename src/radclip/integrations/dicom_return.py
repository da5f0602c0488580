"""Results back into PACS: the SR and heat map of each screened image, by C-STORE or STOW-RS, through a durable outbox.

:class:`DicomReturn` builds the objects (:mod:`radclip.integrations.dicom_results`) from the
received file's header and the :class:`~radclip.integrations.processing.ProcessedStudy`,
writes them to ``$RADCLIP_HOME/pacs/dicom-outbox/<SOPInstanceUID>.dcm`` (they hold the
patient module: PHI, like the quarantine), then sends every file in the outbox and deletes
each one the PACS accepted. A PACS that is down leaves the files for the next
:meth:`DicomReturn.flush`. UIDs are deterministic, so sending again (a retry, or the same
image received twice) stores nothing new in the PACS.

Targets: ``RADCLIP_PACS_RETURN_AE=AET@host:port`` (pynetdicom C-STORE SCU, explicit VR little
endian) or ``RADCLIP_PACS_RETURN_DICOMWEB=<base URL>`` (STOW-RS, ``POST {base}/studies``).
"""

from __future__ import annotations

import io
import logging
import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
STORE_OK = frozenset({0x0000, 0xB000, 0xB007, 0xB006})  # success and the storage warnings


class PacsReturnError(RuntimeError):
    """The PACS could not be reached or refused an object; the files stay in the outbox."""


@dataclass(frozen=True)
class AeAddress:
    ae_title: str
    host: str
    port: int


def parse_ae_address(value: str) -> AeAddress:
    """``AET@host:port`` -> :class:`AeAddress`; ValueError naming the expected form."""
    m = re.fullmatch(r"([ -~]{1,16})@([^:@\s]+):(\d{1,5})", value.strip())
    if not m or not 0 < int(m.group(3)) < 65536:
        raise ValueError(f"PACS AE address {value!r} is not AET@host:port (e.g. ORTHANC@127.0.0.1:4242)")
    return AeAddress(m.group(1).strip(), m.group(2), int(m.group(3)))


def c_store(paths: list[Path], target: AeAddress, calling_ae: str = "RADCLIP") -> list[Path]:
    """C-STORE each file over one association; returns the files the PACS accepted."""
    import pydicom
    from pynetdicom import AE

    datasets = [(p, pydicom.dcmread(p)) for p in paths]
    ae = AE(ae_title=calling_ae)
    for sop_class in {str(ds.SOPClassUID) for _, ds in datasets}:
        ae.add_requested_context(sop_class, "1.2.840.10008.1.2.1")
    assoc = ae.associate(target.host, target.port, ae_title=target.ae_title)
    if not assoc.is_established:
        raise PacsReturnError(f"no association with {target.ae_title} at {target.host}:{target.port}; "
                              f"is the PACS up and does it accept AE title {calling_ae}?")  # fmt: skip
    accepted = []
    try:
        for path, ds in datasets:
            status = assoc.send_c_store(ds)
            code = int(getattr(status, "Status", -1)) if status else -1
            if code in STORE_OK:
                accepted.append(path)
            else:
                log.error(
                    "PACS %s refused %s (C-STORE status 0x%04X)", target.ae_title, path.name, code & 0xFFFF
                )
    finally:
        assoc.release()
    return accepted


def stow_rs(paths: list[Path], base_url: str, client: Any | None = None) -> list[Path]:
    """STOW-RS all files in one multipart request to ``{base_url}/studies``; returns the accepted files."""
    import httpx

    boundary = f"radclip-{uuid.uuid4().hex}"
    body = io.BytesIO()
    for path in paths:
        body.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        body.write(path.read_bytes())
        body.write(b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
               "Accept": "application/dicom+json"}  # fmt: skip
    http = client or httpx.Client(timeout=30)
    try:
        response = http.post(f"{base_url.rstrip('/')}/studies", content=body.getvalue(), headers=headers)
    except httpx.TransportError as exc:
        raise PacsReturnError(
            f"STOW-RS to {base_url} failed ({type(exc).__name__}); is the DICOMweb server up?"
        ) from None
    finally:
        if client is None:
            http.close()
    if response.status_code not in (200, 202):
        raise PacsReturnError(
            f"STOW-RS to {base_url} answered HTTP {response.status_code}: {response.text[:200]}"
        )
    return list(paths)  # 202 with failed instances: kept simple, the whole request is retried later


class DicomReturn:
    """See the module docstring. ``target``: an :class:`AeAddress` or a DICOMweb base URL."""

    def __init__(self, home: Path, target: AeAddress | str, calling_ae: str = "RADCLIP") -> None:
        self.outbox = Path(home).expanduser() / "pacs" / "dicom-outbox"
        self.target, self.calling_ae = target, calling_ae
        self._lock = threading.Lock()
        self.sent = 0  # objects the PACS accepted

    @classmethod
    def from_settings(cls, settings: Any) -> DicomReturn | None:
        if settings.pacs_return_ae:
            return cls(settings.home, parse_ae_address(settings.pacs_return_ae))
        if settings.pacs_return_dicomweb:
            return cls(settings.home, settings.pacs_return_dicomweb)
        return None

    def submit(self, data: bytes, processed: Any) -> list[str]:
        """Build the SR and heat map for one screened image, queue them, send; returns their SOP Instance UIDs."""
        import pydicom

        from radclip.integrations.dicom_results import build_results

        source = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        results = build_results(
            source, processed.report_items, processed.models, processed.heatmap, processed.heatmap_caption
        )
        self.outbox.mkdir(parents=True, exist_ok=True)
        for ds in results.datasets:
            tmp = self.outbox / f".{ds.SOPInstanceUID}.tmp"
            ds.save_as(tmp, enforce_file_format=True)
            tmp.replace(self.outbox / f"{ds.SOPInstanceUID}.dcm")  # atomic: flush never sees half a file
        self.flush()
        return [str(ds.SOPInstanceUID) for ds in results.datasets]

    def pending(self) -> list[Path]:
        return sorted(self.outbox.glob("*.dcm")) if self.outbox.is_dir() else []

    def flush(self) -> int:
        """Send every queued object; returns how many are still queued (logged, not raised, when the PACS is down)."""
        with self._lock:
            paths = self.pending()
            if not paths:
                return 0
            try:
                if isinstance(self.target, AeAddress):
                    done = c_store(paths, self.target, self.calling_ae)
                else:
                    done = stow_rs(paths, self.target)
            except (PacsReturnError, OSError) as exc:
                log.warning(
                    "DICOM results not sent back yet (%d queued in %s): %s", len(paths), self.outbox, exc
                )
                return len(paths)
            for path in done:
                path.unlink(missing_ok=True)
            self.sent += len(done)
            log.info("sent %d DICOM result object(s) back to PACS", len(done))
            return len(paths) - len(done)
