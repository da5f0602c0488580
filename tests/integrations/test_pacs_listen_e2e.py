"""End to end, as a hospital runs it: dcmtk storescu -> `radclip pacs listen` -> Orthanc (SR + heat map) and FHIR.

Real Orthanc, the real CLI in its own process, dcmtk's ``storescu`` as the sender and the Medplum
test server. After one C-STORE the PACS holds the original plus the SR and the heat map (both
pass ``dciodvfy``) and FHIR holds the readable report, its subject resolved by MRN. The same
image sent again adds nothing anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from integration_servers import (
    MRN_SYSTEM,
    REPO,
    SCU_AET,
    dciodvfy_errors,
    dicom_variant,
    free_port,
    make_patient,
)

from radclip.integrations.fhir_client import FhirClient


def _wait(what: str, check: Callable[[], Any], timeout_s: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _storescu(path: Path, port: int, called: str) -> None:
    if shutil.which("storescu") is None:
        pytest.skip("storescu (Debian dcmtk) is not installed: apt-get install dcmtk")
    cmd = ["storescu", "--propose-jpeg8", "-aet", SCU_AET, "-aec", called, "127.0.0.1", str(port), str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def _study_instances(orthanc: Any, study_uid: str) -> list[dict[str, Any]]:
    ids = httpx.post(
        f"{orthanc.http}/tools/find", json={"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}}
    ).json()
    return [httpx.get(f"{orthanc.http}/instances/{i}/simplified-tags").json() | {"_id": i} for i in ids]


def _start_listen(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "radclip.cli", "pacs", "listen", "--port", str(port), "--max-seconds", "600"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=log.open("w"), text=True, cwd=REPO)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # {"listening": ...} once the SCP is up (models loaded)
    assert '"listening"' in first, f"radclip pacs listen did not start: {first!r}; see {log}"
    return proc


def _listen_env(tmp_path: Path, models: tuple[Path, Path], fhir_url: str, pacs_port: int) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "RADCLIP_HOME": str(tmp_path / "home"),
            "RADCLIP_TRIAGE_MODEL": str(models[0]), "RADCLIP_CLIP_MODEL": str(models[1]),
            "RADCLIP_FHIR_URL": fhir_url, "RADCLIP_FHIR_MRN_SYSTEM": MRN_SYSTEM, "RADCLIP_TORCH_THREADS": "1",
            "RADCLIP_PACS_RETURN_AE": f"ORTHANC@127.0.0.1:{pacs_port}", "RADCLIP_LOG_LEVEL": "INFO"}  # fmt: skip


def test_storescu_to_radclip_puts_results_in_pacs_and_fhir(tiny_models: tuple[Path, Path], orthanc: Any, fhir_server: Any,
                                                           real_dicom: Path, tmp_path: Path) -> None:  # fmt: skip
    mrn = "MRN-E2E-0001"
    ds = dicom_variant(real_dicom, mrn, sop_suffix="91", study_suffix="91")
    study = str(ds.StudyInstanceUID)
    path = tmp_path / "cxr.dcm"
    ds.save_as(path, enforce_file_format=True)
    with FhirClient(fhir_server.url) as client:
        pid = make_patient(client, mrn)
    env = _listen_env(tmp_path, tiny_models, fhir_server.url, orthanc.dicom_port)
    port, log = free_port(), tmp_path / "listen.log"
    _storescu(path, orthanc.dicom_port, "ORTHANC")  # the modality stores the original in the PACS
    proc = _start_listen(env, port, log)
    try:
        _storescu(path, port, "RADCLIP")  # ... and sends it to radclip
        instances = _wait(
            "the SR and heat map in Orthanc",
            lambda: (i := _study_instances(orthanc, study)) and len(i) >= 3 and i,
        )
        with FhirClient(fhir_server.url) as client:
            reports = _wait(
                "the report in FHIR", lambda: client.search("DiagnosticReport", {"patient": f"Patient/{pid}"})
            )
            observations = client.search("Observation", {"subject": f"Patient/{pid}"})
            counts = {
                k: client.count(k)
                for k in ("DiagnosticReport", "Observation", "Provenance", "Device", "ImagingStudy")
            }
            _storescu(path, port, "RADCLIP")  # the same image again
            _wait(
                "the second image to be screened",
                lambda: log.read_text().count("screened SOP Instance UID") >= 2,
            )
            time.sleep(
                5
            )  # two delivery-worker passes (every 2 s): anything new would be on the server by now
            assert {k: client.count(k) for k in counts} == counts
        assert len(_study_instances(orthanc, study)) == 3
    finally:
        # SIGTERM, as a service manager stops it: SIGINT may be ignored in a background job (POSIX shells start
        # them so), and then the listener would never hear it. Graceful: the SCP stops, the delivery worker
        # finishes its pass, the pipeline closes.
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"'radclip pacs listen' did not stop within 180 s of SIGTERM; its log ends:\n{log.read_text()[-3000:]}")
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["received"]["processed"] == 2 and summary["received"]["dicom_results"] == 4
    assert summary["outbox"] == {"pending": 0, "delivered": 1, "failed": 0}

    # PACS: the original plus a new series each for the SR and the heat map, same study, both valid
    by_modality = {i["Modality"]: i for i in instances}
    assert set(by_modality) == {"CR", "SR", "OT"} and len(instances) == 3
    assert len({i["SeriesInstanceUID"] for i in instances}) == 3
    for modality in ("SR", "OT"):
        file = tmp_path / f"{modality}.dcm"
        file.write_bytes(httpx.get(f"{orthanc.http}/instances/{by_modality[modality]['_id']}/file").content)
        assert dciodvfy_errors(file) == [], modality
    assert "NOT FOR DIAGNOSTIC USE" in by_modality["OT"]["SeriesDescription"]
    # FHIR: the readable report by MRN, with a conclusion, Device and Provenance
    (report,) = reports
    assert report["subject"]["reference"] == f"Patient/{pid}" and report["conclusion"].startswith(
        "AI triage (tiny-triage vtest-0)"
    )
    assert len(observations) == len(report["result"]) and all(o["valueBoolean"] is True for o in observations)
    assert counts["Provenance"] >= 1 and counts["Device"] >= 2
