"""``radclip inspect``: JSON facts for good input, one clean stderr line and exit 2 for bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radclip.cli import main


@pytest.mark.shared_data
def test_inspect_real_dicom_json(real_dicom: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(real_dicom), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["source_format"] == "dicom" and facts["shape"] == [1024, 1024] and facts["dtype"] == "float32"
    assert facts["min"] == 0.0 and facts["max"] == 1.0 and facts["mean"] == pytest.approx(0.62913, abs=1e-4)
    assert facts["photometric"] == "MONOCHROME2" and facts["windowing"] == "stored range [0, 255]"
    assert facts["modality"] == "CR" and facts["view_position"] == "PA"
    assert facts["patient_sex"] == "M" and facts["patient_age_years"] == 62.0
    assert facts["pixel_spacing_mm"] == [0.168, 0.168]
    assert facts["contract_shape"] == [1, 224, 224] and facts["contract_dtype"] == "float32"
    assert 0.0 <= facts["contract_min"] < facts["contract_max"] <= 1.0
    assert facts["patient_id_present"] is True and "patient_id" not in facts  # never printed


def test_inspect_png_text_output_and_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((30, 40), 51, dtype=np.uint8)).save(path)
    assert main(["inspect", str(path), "--size", "64"]) == 0
    out = capsys.readouterr().out
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert lines["shape"] == "[30, 40]" and lines["source_format"] == "png"
    assert lines["mean"] == "0.2" and lines["contract_shape"] == "[1, 64, 64]"
    assert lines["view_position"] == "-"


@pytest.mark.parametrize(
    ("content", "error"),
    [(b"", "EmptyFileError"), (b"not an image at all\n", "UnsupportedFormatError"), (None, "ImageTooLargeError")],
)
def test_inspect_bad_input_exit_2_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, error: str) -> None:
    path = tmp_path / "bad.dcm"
    if content is None:
        bio = io.BytesIO()
        Image.new("L", (1200, 1000)).save(bio, format="PNG")
        content = bio.getvalue()
    path.write_bytes(content)
    assert main(["inspect", str(path), "--max-pixels", "1000000"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err
    assert lines[0].startswith(f"radclip inspect: {error}: {path}")


def test_inspect_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path / "nope.png")]) == 2
    err = capsys.readouterr().err
    assert "FileNotFoundError" in err and "does not exist" in err and "Traceback" not in err


@pytest.mark.shared_data
def test_inspect_truncated_dicom_one_line(real_dicom: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = real_dicom.read_bytes()
    half = tmp_path / "half.dcm"
    half.write_bytes(data[: len(data) // 2])
    assert main(["inspect", str(half), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"radclip inspect: CorruptImageError: {half}: the DICOM file is truncated")
