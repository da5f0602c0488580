"""`radclip pacs sync --once` and `radclip pacs status` against real Orthanc and FHIR servers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from integration_servers import PHI_NAME, dicom_variant, make_patient, send_c_store


def test_cli_sync_once_delivers_and_reports_status(tiny_models: tuple[Path, Path], orthanc: Any, fhir_server: Any, real_dicom: Path,
                                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from radclip.cli import main
    from radclip.integrations.fhir_client import FhirClient
    from radclip.settings import get_settings

    monkeypatch.setenv("RADCLIP_TRIAGE_MODEL", str(tiny_models[0]))
    monkeypatch.setenv("RADCLIP_CLIP_MODEL", str(tiny_models[1]))
    get_settings.cache_clear()
    patient_id = "radclip-cli-sync"
    assert send_c_store(
        [dicom_variant(real_dicom, patient_id, sop_suffix="41", study_suffix="41")],
        orthanc.dicom_port,
        "ORTHANC",
    ) == [0]
    with FhirClient(fhir_server.url) as client:
        pid = make_patient(client, patient_id)
    argv = ["pacs", "sync", "--dicomweb", orthanc.dicomweb, "--once", "--fhir", fhir_server.url]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["sync"]["instances_new"] == 1 and first["delivery"]["delivered"] == 1
    assert main(argv) == 0  # a second run (a restarted radclip) finds nothing new
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["sync"]["instances_new"] == 0 and second["outbox"] == {
        "pending": 0,
        "delivered": 1,
        "failed": 0,
    }
    with FhirClient(fhir_server.url) as client:
        assert client.count("DiagnosticReport", {"patient": f"Patient/{pid}"}) == 1
    assert main(["pacs", "status"]) == 0
    status = capsys.readouterr().out
    assert (
        json.loads(status)["dicomweb_instances_done"] == 1
        and PHI_NAME not in status
        and patient_id not in status
    )
    # PHI at rest: nothing under RADCLIP_HOME but quarantined DICOM files (none here) may hold the name
    home = get_settings().home
    for path in home.rglob("*"):
        if path.is_file() and path.suffix != ".dcm":
            assert PHI_NAME.encode() not in path.read_bytes(), f"patient name found in {path}"
    # orthanc down: the command reports it (exit 3) instead of crashing
    orthanc.stop()
    assert main(argv) == 3
