"""PNG / JPEG loading: scaling rules, colour to grey, header-based size refusal, damaged files."""

from __future__ import annotations

import csv
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from radclip.io.errors import CorruptImageError, EmptyFileError, ImageTooLargeError, UnsupportedFormatError
from radclip.io.loader import load_image, sniff_format
from radclip.io.raster import png_significant_bits

RNG = np.random.default_rng(7)
LUMA = np.array([0.299, 0.587, 0.114])


def _png(img: Image.Image, **kw: object) -> bytes:
    bio = io.BytesIO()
    img.save(bio, format="PNG", **kw)
    return bio.getvalue()


@pytest.mark.shared_data
def test_shared_pngs_load_as_value_over_255(cxr_manifest: Path) -> None:
    with open(cxr_manifest, newline="") as fh:
        rows = [r for _, r in zip(range(200), csv.DictReader(fh), strict=False)]
    picked = {r["source"]: r for r in rows}  # one image per source seen in the first rows
    for row in list(picked.values())[:3]:
        path = cxr_manifest.parent / row["path"]
        img = load_image(path)
        stored = np.asarray(Image.open(path))
        assert stored.dtype == np.uint8 and stored.shape == (256, 256)
        assert img.pixels.shape == (256, 256) and img.pixels.dtype == np.float32
        np.testing.assert_allclose(img.pixels, stored / 255.0, rtol=0, atol=1e-7)
        assert img.meta.source_format == "png" and img.meta.photometric == "L" and img.meta.bits_stored == 8


def test_16_bit_png_scaled_by_65535() -> None:
    arr = RNG.integers(0, 65536, size=(20, 30)).astype(np.uint16)
    img = load_image(_png(Image.fromarray(arr)), filename_hint="x16.png")
    np.testing.assert_allclose(img.pixels, arr / 65535.0, rtol=0, atol=1e-7)
    assert img.meta.bits_stored == 16 and img.meta.photometric.startswith("I")


def test_16_bit_png_with_sbit_12_and_raw_12_bit_values() -> None:
    arr = RNG.integers(0, 4096, size=(20, 30)).astype(np.uint16)
    info = PngImagePlugin.PngInfo()
    info.add(b"sBIT", bytes([12]))
    data = _png(Image.fromarray(arr), pnginfo=info)
    assert png_significant_bits(data) == 12
    img = load_image(data)
    np.testing.assert_allclose(img.pixels, arr / 4095.0, rtol=0, atol=1e-7)
    assert img.meta.bits_stored == 12 and "sBIT" in img.meta.extra["notes"][0]
    # values above 4095 mean the writer already scaled to 16 bits (PNG spec): back to / 65535
    scaled = (arr.astype(np.uint32) << 4).astype(np.uint16)
    img = load_image(_png(Image.fromarray(scaled), pnginfo=info))
    np.testing.assert_allclose(img.pixels, scaled / 65535.0, rtol=0, atol=1e-7)


def test_rgb_jpeg_uses_bt601_luma() -> None:
    rgb = RNG.integers(0, 256, size=(24, 24, 3)).astype(np.uint8)
    bio = io.BytesIO()
    Image.fromarray(rgb).save(bio, format="JPEG", quality=95)
    data = bio.getvalue()
    assert sniff_format(data[:132]) == "jpeg"
    img = load_image(data, filename_hint="colour.jpg")
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)
    np.testing.assert_allclose(img.pixels, decoded @ LUMA / 255.0, rtol=0, atol=1e-6)
    assert img.meta.source_format == "jpeg" and img.meta.photometric == "RGB (to gray)"
    assert "BT.601" in img.meta.extra["notes"][0]


def test_grey_stored_as_rgb_or_palette_equals_grey() -> None:
    grey = RNG.integers(0, 256, size=(16, 16)).astype(np.uint8)
    expected = load_image(_png(Image.fromarray(grey))).pixels
    as_rgb = load_image(_png(Image.fromarray(np.stack([grey] * 3, axis=-1)))).pixels
    np.testing.assert_allclose(as_rgb, expected, rtol=0, atol=1e-6)
    as_rgba = load_image(_png(Image.fromarray(grey).convert("RGBA")))
    np.testing.assert_allclose(as_rgba.pixels, expected, rtol=0, atol=1e-6)
    assert "alpha dropped" in as_rgba.meta.extra["notes"][0]
    palette = load_image(_png(Image.fromarray(grey).convert("P")))
    np.testing.assert_allclose(palette.pixels, expected, rtol=0, atol=1e-6)
    assert palette.meta.photometric == "P (to gray)"


def _huge_blank_png(side: int) -> bytes:
    """A valid side x side 8-bit grey PNG of zeros, compressed row by row (low memory)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_100_megapixel_png_refused_from_header() -> None:
    data = _huge_blank_png(10_000)
    assert len(data) < 200_000  # 100 Mpx of zeros, tiny on disk: a decompression bomb
    with pytest.raises(ImageTooLargeError, match=r"10000x10000 = 100,000,000 pixels.*limit of 50,000,000.*RADCLIP_MAX_IMAGE_PIXELS"):
        load_image(data, filename_hint="bomb.png")


def test_pillow_bomb_error_becomes_image_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow errors above 2x this, at open
    data = _png(Image.fromarray(np.zeros((100, 100), dtype=np.uint8)))
    with pytest.raises(ImageTooLargeError, match=r"big\.png: Image size \(10000 pixels\) exceeds limit.*downsample"):
        load_image(data, filename_hint="big.png", max_pixels=10**9)


def test_max_pixels_setting_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from radclip.settings import get_settings

    data = _png(Image.fromarray(np.zeros((1100, 1000), dtype=np.uint8)))
    assert load_image(data).pixels.shape == (1100, 1000)
    monkeypatch.setenv("RADCLIP_MAX_IMAGE_PIXELS", "1000000")
    get_settings.cache_clear()
    with pytest.raises(ImageTooLargeError, match=r"1,100,000 pixels.*limit of 1,000,000"):
        load_image(data)


def test_truncated_png_and_jpeg_are_corrupt() -> None:
    data = _png(Image.fromarray(RNG.integers(0, 256, size=(64, 64)).astype(np.uint8)))
    with pytest.raises(CorruptImageError, match=r"cut\.png.*PNG pixel data cannot be decoded.*re-export"):
        load_image(data[: len(data) // 2], filename_hint="cut.png")
    bio = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, size=(64, 64)).astype(np.uint8)).save(bio, format="JPEG")
    jpeg = bio.getvalue()
    with pytest.raises(CorruptImageError, match=r"cut\.jpg.*JPEG pixel data cannot be decoded.*truncated"):
        load_image(jpeg[: len(jpeg) // 2], filename_hint="cut.jpg")
    with pytest.raises(CorruptImageError, match=r"head\.jpg.*image header cannot be read.*truncated, re-export"):
        load_image(jpeg[:300], filename_hint="head.jpg")


def test_empty_text_and_other_formats_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(EmptyFileError, match=r"empty\.dcm is empty \(0 bytes\).*send the file again"):
        load_image(empty)
    text = tmp_path / "notes.dcm"
    text.write_text("Patient notes: no acute findings.\n")
    with pytest.raises(UnsupportedFormatError, match=r"notes\.dcm is not DICOM, PNG or JPEG \(it looks like text: 'Patient notes.*send a DICOM"):
        load_image(text)
    bio = io.BytesIO()
    Image.new("L", (8, 8)).save(bio, format="GIF")
    with pytest.raises(UnsupportedFormatError, match=r"scan\.gif is not DICOM, PNG or JPEG \(it starts with b'GIF8"):
        load_image(bio.getvalue(), filename_hint="scan.gif")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image(tmp_path / "missing.png")


def test_png_named_dcm_is_read_by_content(tmp_path: Path) -> None:
    grey = RNG.integers(0, 256, size=(8, 8)).astype(np.uint8)
    path = tmp_path / "looks_like.dcm"
    path.write_bytes(_png(Image.fromarray(grey)))
    img = load_image(path)
    assert img.meta.source_format == "png"
    np.testing.assert_allclose(img.pixels, grey / 255.0, rtol=0, atol=1e-7)
