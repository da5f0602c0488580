"""Fixtures shared by the whole suite.

Tests that need the real data in ``../shared/data`` take the ``data_root`` fixture (or
``cxr_manifest``); they skip with a reason when it is absent, so the suite still passes
on a machine without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from radclip.settings import load_settings

REAL_DICOM_NAME = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own RADCLIP_HOME, so no test reads or writes ~/.radclip."""
    home = tmp_path_factory.mktemp("radclip_home")
    monkeypatch.setenv("RADCLIP_HOME", str(home))
    from radclip.settings import get_settings

    get_settings.cache_clear()
    return home


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = load_settings().data_root
    if not (root / "cxr" / "manifest.csv").is_file():
        pytest.skip(f"shared data not found at {root} (set RADCLIP_DATA_ROOT to the folder holding cxr/manifest.csv)")
    return root


@pytest.fixture(scope="session")
def cxr_manifest(data_root: Path) -> Path:
    return data_root / "cxr" / "manifest.csv"


@pytest.fixture(scope="session")
def real_dicom(data_root: Path) -> Path:
    path = data_root / "dicom" / REAL_DICOM_NAME
    if not path.is_file():
        pytest.skip(f"real DICOM not found at {path}")
    return path


@pytest.fixture(scope="session")
def require_same_data():  # type: ignore[no-untyped-def]
    """The function below, as a fixture (tests import nothing from conftest)."""
    return _require_same_data


def _require_same_data(measured_on: str | None, manifest: Path, what: str) -> None:
    """Skip (saying why) unless ``measured_on`` (a card's ``data_snapshot``) is this manifest's snapshot.

    Model cards record the data their numbers were measured on; a reproduction test compares
    numbers only on that data and says clearly when it could not.
    """
    from radclip.io.manifest import data_snapshot

    here = data_snapshot(manifest)
    if measured_on != here:
        pytest.skip(f"{what} numbers were measured on data {measured_on!r}, this manifest is {here!r}: "
                    "not comparable; re-measure the card on this data (docs/evaluation.md, 'Re-baselining')")
