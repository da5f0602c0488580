"""The real SIIM-ACR CR chest DICOM (JPEG baseline) from the shared data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radclip.io.contract import to_contract_tensor
from radclip.io.errors import CorruptImageError
from radclip.io.loader import load_image, sniff_format

pytestmark = pytest.mark.shared_data


def test_real_dicom_pixels_and_metadata(real_dicom: Path) -> None:
    import pydicom

    img = load_image(real_dicom)
    px, meta = img.pixels, img.meta
    assert px.dtype == np.float32 and px.shape == (1024, 1024)
    assert px.min() == 0.0 and px.max() == 1.0
    assert px.mean() == pytest.approx(0.62913, abs=1e-4)
    # 8-bit MONOCHROME2, no window or VOI LUT: value / 255, exactly what pydicom decodes
    stored = pydicom.dcmread(real_dicom).pixel_array
    np.testing.assert_allclose(px, stored / 255.0, rtol=0, atol=1e-7)
    assert meta.source_format == "dicom" and meta.photometric == "MONOCHROME2"
    assert meta.windowing == "stored range [0, 255]" and meta.bits_stored == 8
    assert meta.modality == "CR" and meta.view_position == "PA"
    assert meta.patient_sex == "M" and meta.patient_age_years == 62.0  # PatientAge is "62" (no unit)
    assert meta.pixel_spacing_mm == (0.168, 0.168)
    assert meta.original_shape == (1024, 1024)
    assert meta.sop_instance_uid == real_dicom.stem
    assert meta.study_instance_uid == "1.2.276.0.7230010.3.1.2.8323329.6904.1517875201.850818"
    assert meta.series_instance_uid == "1.2.276.0.7230010.3.1.3.8323329.6904.1517875201.850817"
    assert meta.study_date == "19010101" and meta.patient_id == "16d7f894-55d7-4d95-8957-d18987f0e981"
    assert meta.extra["transfer_syntax"] == "JPEG Baseline (Process 1)" and meta.extra["notes"] == []


def test_real_dicom_bytes_equal_path_and_contract_tensor(real_dicom: Path) -> None:
    data = real_dicom.read_bytes()
    assert sniff_format(data[:132]) == "dicom"
    from_path = load_image(real_dicom)
    from_bytes = load_image(data, filename_hint="upload.dcm")
    np.testing.assert_array_equal(from_path.pixels, from_bytes.pixels)
    assert from_bytes.meta == from_path.meta
    tensor = to_contract_tensor(from_path.pixels, 224)
    assert tensor.shape == (1, 224, 224) and tensor.dtype == np.float32
    assert 0.0 <= tensor.min() < tensor.max() <= 1.0
    # a 1024 -> 224 anti-aliased resize keeps the mean grey level
    assert float(tensor.mean()) == pytest.approx(float(from_path.pixels.mean()), abs=2e-3)


def test_real_dicom_named_png_is_still_read_as_dicom(real_dicom: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "chest.png"
    renamed.write_bytes(real_dicom.read_bytes())
    assert load_image(renamed).meta.source_format == "dicom"


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter:UserWarning")
def test_truncated_real_dicom(real_dicom: Path, tmp_path: Path) -> None:
    data = real_dicom.read_bytes()
    half = tmp_path / "half.dcm"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImageError, match=r"half\.dcm: the DICOM file is truncated.*copy or re-export the complete file"):
        load_image(half)
    # cut inside the header: the image attributes survive but the pixel data is gone
    with pytest.raises(CorruptImageError, match=r"declares an image.*no Pixel Data.*re-export"):
        load_image(data[:700], filename_hint="head.dcm")
