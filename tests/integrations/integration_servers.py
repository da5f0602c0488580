"""Real servers (Orthanc, the FHIR test server) and DICOM helpers for the PACS / FHIR integration tests.

Imported by name (``from integration_servers import ...``), never as ``conftest``: several test folders have a
conftest.py, and ``from conftest import`` resolves to whichever was imported first in a mixed run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPTS = REPO / "scripts"

SCU_AET = "RADCLIP_SCU"  # the calling AE title the generated Orthanc config accepts from 127.0.0.1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_script(args: list[str], what: str) -> dict[str, str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.skip(f"{what} could not be started: {proc.stderr.strip()[-800:]}")
    return dict(
        line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line and not line.startswith("#")
    )


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(300):  # up to 15 s: a loaded machine stops Orthanc slowly
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):  # it may exit between the last check and now
        os.kill(pid, signal.SIGKILL)


@dataclass
class FhirServer:
    url: str
    pid: int
    port: int

    def stop(self) -> None:
        _stop(self.pid)


def start_fhir(port: int | None = None) -> FhirServer:
    env = _run_script(
        [str(SCRIPTS / "start_fhir_server.sh"), *([str(port)] if port else [])], "the FHIR test server"
    )
    url = env["RADCLIP_FHIR_URL"]
    return FhirServer(url, int(env["FHIR_SERVER_PID"]), int(url.split(":")[2].split("/")[0]))


@dataclass
class Orthanc:
    http: str
    dicomweb: str
    dicom_port: int
    pid: int
    storage: str
    http_port: int = 0
    restarts: list[int] = field(default_factory=list)

    def stop(self) -> None:
        _stop(self.pid)

    def restart(self) -> None:
        """Start again over the same storage and ports (the stored studies survive)."""
        self.stop()
        env = _run_script(
            [str(SCRIPTS / "start_orthanc.sh"), str(self.http_port), str(self.dicom_port), self.storage],
            "Orthanc",
        )
        self.pid = int(env["ORTHANC_PID"])
        self.restarts.append(self.pid)


def start_orthanc() -> Orthanc:
    env = _run_script([str(SCRIPTS / "start_orthanc.sh")], "Orthanc")
    http = env["ORTHANC_HTTP"]
    return Orthanc(http, env["ORTHANC_DICOMWEB"], int(env["ORTHANC_DICOM_PORT"]), int(env["ORTHANC_PID"]),
                   env["ORTHANC_STORAGE"], http_port=int(http.rsplit(":", 1)[1]))  # fmt: skip


def dciodvfy_errors(path: Path) -> list[str]:
    """The ``Error`` lines dicom3tools' validator prints for ``path`` (skips when dciodvfy is missing)."""
    if shutil.which("dciodvfy") is None:  # install once (Debian dicom3tools), skip only if that fails
        try:
            done = subprocess.run([str(SCRIPTS / "ensure_apt.sh"), "dicom3tools"], capture_output=True, text=True,
                                  timeout=400).stderr.strip()[-200:]  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            done = f"{type(exc).__name__}: {exc}"
        if shutil.which("dciodvfy") is None:
            pytest.skip(f"dciodvfy (Debian dicom3tools) is not installed and could not be: {done}")
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


MRN_SYSTEM = (
    "urn:oid:1.2.36.146.595.217.0.1"  # the hospital's MRN system in the tests (RADCLIP_FHIR_MRN_SYSTEM)
)


def make_patient(client: Any, mrn: str) -> str:
    """A Patient whose server id differs from its MRN (``Patient.identifier``); returns the server id."""
    made = client.create(
        {"resourceType": "Patient", "identifier": [{"system": MRN_SYSTEM, "value": mrn}], "gender": "female"}
    )
    assert made["id"] != mrn
    return str(made["id"])


PHI_NAME = "DOE^JANE^PHITEST"  # a patient name that must never leave the DICOM / FHIR systems


def dicom_variant(
    real_dicom: Path, patient_id: str, sop_suffix: str = "1", study_suffix: str | None = None
) -> Any:
    """The real DICOM with a test patient (PHI_NAME, ``patient_id``) and fresh SOP (and optionally study) UIDs."""
    import pydicom

    ds = pydicom.dcmread(real_dicom)
    ds.PatientName = PHI_NAME
    ds.PatientID = patient_id
    ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{sop_suffix}"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if study_suffix is not None:
        ds.StudyInstanceUID = f"{ds.StudyInstanceUID}.{study_suffix}"
        ds.SeriesInstanceUID = f"{ds.SeriesInstanceUID}.{study_suffix}"
    return ds


def send_c_store(datasets: list[Any], port: int, called_aet: str, calling_aet: str = SCU_AET) -> list[int]:
    """C-STORE each dataset over one association; returns the status codes."""
    from pynetdicom import AE

    ae = AE(ae_title=calling_aet)
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=called_aet)
    assert assoc.is_established, f"association with {called_aet} on port {port} was not established"
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()
