"""Settings: every field is a RADCLIP_* variable, and bad values fail fast naming the variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from radclip.settings import Settings, SettingsError, load_settings, repository_root


def test_defaults_point_at_shared_data_and_home(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.upper().startswith("RADCLIP_")]:  # the defaults, whatever the shell set
        monkeypatch.delenv(name)
    s = load_settings()
    assert s.data_root == (repository_root() / ".." / "shared" / "data").resolve()
    assert s.home == Path("~/.radclip").expanduser()
    assert s.resolved_database_url == f"sqlite:///{s.home / 'radclip.db'}"
    assert s.api_key is None and s.redis_url is None


def test_fixed_env_names_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RADCLIP_DATA_ROOT", str(tmp_path / "d"))
    monkeypatch.setenv("RADCLIP_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("RADCLIP_DATABASE_URL", "postgresql://u@127.0.0.1:5432/radclip")
    monkeypatch.setenv("RADCLIP_REDIS_URL", "redis://127.0.0.1:6390/0")
    monkeypatch.setenv("RADCLIP_API_KEY", "s3cret")
    monkeypatch.setenv("RADCLIP_PORT", "8123")
    s = load_settings()
    assert s.data_root == tmp_path / "d"
    assert s.home == tmp_path / "h"
    assert s.resolved_database_url == "postgresql://u@127.0.0.1:5432/radclip"
    assert s.redis_url == "redis://127.0.0.1:6390/0"
    assert s.api_key == "s3cret"
    assert s.port == 8123


@pytest.mark.parametrize(
    ("var", "value", "fragment"),
    [
        ("RADCLIP_PORT", "70000", "RADCLIP_PORT"),
        ("RADCLIP_PORT", "eighty", "RADCLIP_PORT"),
        ("RADCLIP_DATABASE_URL", "mysql://x", "sqlite:// or postgresql://"),
        ("RADCLIP_REDIS_URL", "127.0.0.1:6379", "redis://"),
        ("RADCLIP_MAX_UPLOAD_MB", "-1", "RADCLIP_MAX_UPLOAD_MB"),
        ("RADCLIP_DEVICE", "tpu", "RADCLIP_DEVICE"),
        ("RADCLIP_CORPUS", "dicomweb+http://127.0.0.1:8042/dicom-web", "does not list a DICOMweb server yet"),
    ],
)
def test_bad_values_fail_naming_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str, fragment: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert fragment in str(info.value)
    assert var in str(info.value)


def test_every_field_has_a_description() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} needs a description"
