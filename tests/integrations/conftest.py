"""Fixtures for the PACS / FHIR integration tests: real servers on loopback and tiny models.

Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) and the Medplum-based FHIR test server are
installed and started by radclip's own scripts on loopback, free ports. A test that needs a
server skips with the script's reason only when it cannot be installed or started here.
Helpers live in ``integration_servers.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from integration_servers import MRN_SYSTEM, FhirServer, Orthanc, start_fhir, start_orthanc


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: the tiny models are faster so on a busy 2-core machine (restored afterwards)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[FhirServer]:
    server = start_fhir()
    yield server
    server.stop()


@pytest.fixture
def orthanc() -> Iterator[Orthanc]:
    server = start_orthanc()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(triage weights, clip weights): seeded random weights with cards; seconds on CPU, no download."""
    from radclip.models.tiny_artifacts import write_tiny_models

    return write_tiny_models(tmp_path_factory.mktemp("integration-models"))


@pytest.fixture(scope="module")
def pipeline(tiny_models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real ModelPipeline (triage + CLIP + screener + PACS study index) over a module-wide RADCLIP_HOME."""
    from radclip.integrations.pipeline import build_pipeline
    from radclip.settings import load_settings

    home = tmp_path_factory.mktemp("pacs-home")
    settings = load_settings(
        home=home,
        triage_model=str(tiny_models[0]),
        clip_model=str(tiny_models[1]),
        fhir_mrn_system=MRN_SYSTEM,
    )
    pipe = build_pipeline(settings)
    pipe.home = home  # type: ignore[attr-defined]
    yield pipe
    pipe.close()
