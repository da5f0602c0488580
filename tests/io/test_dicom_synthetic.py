"""Synthetic DICOMs written with pydicom: grey-level pipeline values and header-based refusals."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from pydicom.dataset import Dataset, FileDataset, FileMetaDataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pydicom.uid import (  # noqa: E402
    ComprehensiveSRStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from radclip.io.errors import (  # noqa: E402
    CorruptImageError,
    ImageTooLargeError,
    MissingDependencyError,
    MultiFrameError,
    NotAnImageError,
    UnsupportedModalityError,
)
from radclip.io.loader import load_image  # noqa: E402

RNG = np.random.default_rng(1234)
IMG12 = RNG.integers(0, 4096, size=(40, 32)).astype(np.uint16)


def make_dicom(
    arr: np.ndarray | None = IMG12,
    *,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    sop_class: str = DigitalXRayImageStorageForPresentation,
    preamble: bool = True,
    compress: str | None = None,
    **attrs: Any,
) -> bytes:
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientSex = "F"
    ds.PatientAge = "045Y"
    ds.ViewPosition = "PA"
    if arr is not None:
        ds.set_pixel_data(arr, photometric, bits_stored)
    for key, value in attrs.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    if compress is not None:
        ds.compress(compress)
    bio = io.BytesIO()
    if preamble:
        ds.save_as(bio, enforce_file_format=True)
    else:  # a bare data set, implicit VR, no preamble, no file meta
        del ds.file_meta
        ds.preamble = None
        pydicom.dcmwrite(bio, ds, implicit_vr=True, little_endian=True)
    return bio.getvalue()


def load(data: bytes, **kw: Any):  # type: ignore[no-untyped-def]
    return load_image(data, filename_hint="synthetic.dcm", **kw)


# ---- grey-level pipeline -------------------------------------------------------------------

def test_stored_range_is_bits_stored_scale() -> None:
    img = load(make_dicom())
    assert img.pixels.dtype == np.float32 and img.pixels.shape == (40, 32)
    np.testing.assert_allclose(img.pixels, IMG12 / 4095.0, rtol=0, atol=1e-7)
    assert img.meta.windowing == "stored range [0, 4095]"
    assert img.meta.bits_stored == 12 and img.meta.photometric == "MONOCHROME2"


def test_monochrome1_is_inverted() -> None:
    mono2 = load(make_dicom(photometric="MONOCHROME2")).pixels
    mono1 = load(make_dicom(photometric="MONOCHROME1"))
    np.testing.assert_array_equal(mono1.pixels, (1.0 - mono2).astype(np.float32))
    assert mono1.meta.photometric == "MONOCHROME1 (inverted)"
    # MONOCHROME1 displays high stored values dark: the highest stored value is the darkest pixel
    top = np.equal(IMG12, IMG12.max())
    assert mono1.pixels[top].max() == pytest.approx(1.0 - IMG12.max() / 4095.0, abs=1e-7)
    assert mono1.pixels.min() == mono1.pixels[top].min()


def test_unused_high_bits_are_masked() -> None:
    data = make_dicom()
    dirty = IMG12 | np.uint16(0xF000)  # garbage (e.g. overlay bits) above BitsStored=12
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PixelData = dirty.tobytes()
    bio = io.BytesIO()
    ds.save_as(bio)
    np.testing.assert_allclose(load(bio.getvalue()).pixels, IMG12 / 4095.0, rtol=0, atol=1e-7)


def test_rescale_then_window_centre_width() -> None:
    # stored x -> 2x - 1000 (rescaled), then LINEAR window C=2048 W=1024 (PS3.3 C.11.2.1.2.1)
    stored = np.array([[0, 1268], [1524, 1779]], dtype=np.uint16)  # rescaled: -1000, 1536, 2048, 2558
    img = load(make_dicom(stored, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=2048, WindowWidth=1024))
    rescaled = stored * 2.0 - 1000
    expected = np.clip((rescaled - 2047.5) / 1023 + 0.5, 0, 1)
    expected[rescaled <= 1536] = 0.0
    np.testing.assert_allclose(img.pixels, expected, rtol=0, atol=1e-6)
    assert img.pixels[1, 0] == pytest.approx(0.5 + 0.5 / 1023, abs=1e-6)  # 2048 -> just above mid-grey
    assert img.meta.windowing == "window 2048/1024"


def test_rescale_without_window_keeps_linear_scale() -> None:
    img = load(make_dicom(RescaleSlope=2, RescaleIntercept=-1000))
    np.testing.assert_allclose(img.pixels, IMG12 / 4095.0, rtol=0, atol=1e-6)
    assert img.meta.windowing == "stored range [-1000, 7190]"


def test_sigmoid_window() -> None:
    stored = np.array([[1000, 2048, 3000]], dtype=np.uint16)
    img = load(make_dicom(stored, WindowCenter=2048, WindowWidth=1000, VOILUTFunction="SIGMOID"))
    expected = 1.0 / (1.0 + np.exp(-4.0 * (stored - 2048.0) / 1000.0))
    np.testing.assert_allclose(img.pixels, expected, rtol=0, atol=1e-6)
    assert img.pixels[0, 1] == pytest.approx(0.5, abs=1e-6)


def _voi_lut_item(lut: np.ndarray) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(lut), 0, 16]  # declares 16 bits; data only reaches 1000 (a common mismatch)
    item.LUTData = [int(v) for v in lut]
    item["LUTData"].VR = "US"
    item.LUTExplanation = "SQRT"
    return item


def test_voi_lut_sequence_wins_over_window() -> None:
    lut = np.round(np.sqrt(np.arange(4096) / 4095.0) * 1000).astype(np.uint16)
    img = load(make_dicom(VOILUTSequence=Sequence([_voi_lut_item(lut)]), WindowCenter=100, WindowWidth=10))
    np.testing.assert_allclose(img.pixels, lut[IMG12] / 1000.0, rtol=0, atol=1e-6)
    assert img.meta.windowing == "VOI LUT (SQRT)"


def test_signed_pixels_with_window() -> None:
    stored = np.array([[-2048, -100], [0, 2047]], dtype=np.int16)
    img = load(make_dicom(stored, WindowCenter=0.5, WindowWidth=2))  # LINEAR: x<=-0.5 -> 0, x>0.5 -> 1
    np.testing.assert_array_equal(img.pixels, np.array([[0, 0], [0.5, 1]], dtype=np.float32))


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless], ids=lambda u: u.name)
def test_compressed_decodes_equal_to_uncompressed(syntax: str) -> None:
    from pydicom.pixels import get_encoder

    if not get_encoder(syntax).is_available:
        pytest.skip(f"no encoder for {syntax} installed")
    plain = load(make_dicom(photometric="MONOCHROME1"))
    packed_bytes = make_dicom(photometric="MONOCHROME1", compress=syntax)
    assert pydicom.dcmread(io.BytesIO(packed_bytes)).file_meta.TransferSyntaxUID == syntax
    packed = load(packed_bytes)
    np.testing.assert_array_equal(packed.pixels, plain.pixels)
    assert packed.meta.extra["transfer_syntax"] == pydicom.uid.UID(syntax).name


def test_rgb_secondary_capture_to_bt601_grey() -> None:
    rgb = RNG.integers(0, 256, size=(6, 5, 3)).astype(np.uint8)
    img = load(make_dicom(rgb, bits_stored=8, photometric="RGB", Modality="OT", PatientSex=""))
    expected = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
    np.testing.assert_allclose(img.pixels, expected, rtol=0, atol=1e-6)
    assert img.meta.photometric == "RGB (to gray)" and img.meta.modality == "OT" and img.meta.patient_sex is None


def test_preamble_less_data_set_is_sniffed() -> None:
    data = make_dicom(preamble=False)
    assert data[128:132] != b"DICM"
    np.testing.assert_allclose(load(data).pixels, IMG12 / 4095.0, rtol=0, atol=1e-7)


def test_metadata_and_derived_age() -> None:
    img = load(make_dicom(PatientAge=None, PatientBirthDate="19600315", StudyDate="20200315",
                          ImagerPixelSpacing=[0.2, 0.15], ViewPosition="LL", Modality=None))
    m = img.meta
    assert m.patient_age_years == pytest.approx(60.0, abs=0.01)
    assert m.extra["age_source"] == "PatientBirthDate+StudyDate"
    assert m.pixel_spacing_mm == (0.2, 0.15) and m.extra["pixel_spacing_source"] == "ImagerPixelSpacing"
    assert m.view_position == "LL" and m.extra["lateral"] is True
    assert m.modality is None and any("no Modality" in n for n in m.extra["notes"])
    assert m.patient_sex == "F"


@pytest.mark.parametrize(("text", "years"), [("061Y", 61.0), ("006M", 0.5), ("026W", 26 * 7 / 365.25), ("010D", 10 / 365.25), ("62", 62.0), ("", None), ("abc", None)])
def test_age_string_parsing(text: str, years: float | None) -> None:
    from radclip.io.dicom_meta import parse_age_string

    assert parse_age_string(text) == (None if years is None else pytest.approx(years))


# ---- refusals ------------------------------------------------------------------------------

def test_multi_frame_is_refused() -> None:
    frames = np.stack([IMG12, IMG12])
    data = make_dicom(frames, NumberOfFrames=2)
    with pytest.raises(MultiFrameError, match=r"2 frames.*single-frame"):
        load(data)


def test_structured_report_is_not_an_image() -> None:
    data = make_dicom(None, sop_class=ComprehensiveSRStorage, Modality="SR")
    with pytest.raises(NotAnImageError, match=r"is a DICOM Comprehensive SR Storage and has no pixel data.*send the image object"):
        load(data)


def test_ct_is_refused() -> None:
    with pytest.raises(UnsupportedModalityError, match=r"modality CT.*chest radiographs.*CR or DX"):
        load(make_dicom(Modality="CT"))


def test_invalid_window_width_is_corrupt_not_a_crash() -> None:
    with pytest.raises(CorruptImageError, match=r"grey-level tags.*Window Width.*fix or remove them"):
        load(make_dicom(WindowCenter=2048, WindowWidth=0))


def test_too_many_pixels_refused_from_header_before_decoding() -> None:
    ds = pydicom.dcmread(io.BytesIO(make_dicom()))
    ds.PixelData = b"\x00\x01"  # would fail to decode: proves the refusal comes from Rows x Columns
    bio = io.BytesIO()
    ds.save_as(bio)
    with pytest.raises(ImageTooLargeError, match=r"32x40 = 1,280 pixels.*limit of 1,000.*RADCLIP_MAX_IMAGE_PIXELS"):
        load(bio.getvalue(), max_pixels=1000)
    with pytest.raises(CorruptImageError, match=r"pixel data cannot be decoded.*re-export"):
        load(bio.getvalue())


def test_missing_decoder_plugin_names_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydicom.pixels import get_decoder

    data = make_dicom(compress=RLELossless)
    monkeypatch.setattr(get_decoder(RLELossless), "_available", {})
    with pytest.raises(MissingDependencyError, match=r"RLE Lossless.*pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle"):
        load(data)
