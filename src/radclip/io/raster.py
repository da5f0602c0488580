"""PNG and JPEG radiographs -> :class:`~radclip.io.contract.LoadedImage` (via Pillow).

Scaling rules (also in ``docs/image-contract.md``):

* 8-bit grey: ``value / 255``; bilevel (mode ``1``): 0 or 1.
* 16-bit grey: ``value / 65535``, unless the PNG ``sBIT`` chunk declares ``n < 16``
  significant bits *and* no value exceeds ``2**n - 1`` (raw 12-bit data written without
  the PNG-spec left shift): then ``value / (2**n - 1)``.
* Colour (RGB, RGBA, palette, CMYK, YCbCr): converted to grey with ITU-R BT.601 luma
  (0.299 R + 0.587 G + 0.114 B) in float, alpha dropped; the note says so.

The pixel count is checked from the header before any pixel is decoded.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from radclip.io.contract import CONTRACT_DTYPE, ImageMeta, LoadedImage
from radclip.io.errors import CorruptImageError, ImageTooLargeError, UnsupportedFormatError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
# Pillow format names accepted ("MPO" is a multi-picture JPEG; its first picture is read).
ACCEPTED_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg"}
_EXIF_ORIENTATION = 0x0112
_BAND_ROWS = 256  # rows converted to grey at a time (bounds the temporary copies)


def png_significant_bits(data: bytes) -> int | None:
    """The grey ``sBIT`` value of a PNG (chunks before IDAT), or ``None`` if absent or unreadable."""
    pos = len(PNG_MAGIC)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind in (b"IDAT", b"IEND"):
            return None
        if kind == b"sBIT" and length >= 1:
            return int(data[pos + 8])
        pos += 12 + length
    return None


def _read_head(source: Path | bytes, limit: int = 1 << 16) -> bytes:
    if isinstance(source, bytes):
        return source[:limit]
    with open(source, "rb") as fh:
        return fh.read(limit)


def _open(source: Path | bytes, name: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        # Pillow's own bomb guard stays on (it errors above ~179 Mpx); our limit is checked in load_raster
        return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: {exc}; downsample the image before sending it") from None
    except (UnidentifiedImageError, SyntaxError, OSError, ValueError, struct.error) as exc:
        raise CorruptImageError(f"{name}: the image header cannot be read ({exc}); the file is damaged or truncated, re-export it") from None


def _unit_float32(img: Any, scale: float) -> np.ndarray:
    """``img / scale`` as float32 in [0, 1], without a float64 copy (4 bytes a pixel, not 8)."""
    out = np.asarray(img, dtype=np.float32)
    if not out.flags.writeable:
        out = out.copy()
    out /= np.float32(scale)
    return np.clip(out, 0.0, 1.0, out=out)


def _grey_from_colour(img: Any) -> tuple[np.ndarray, str]:
    """BT.601 luma in [0, 1], converted a band of rows at a time into one float32 array.

    Pillow's RGB -> F is the same luma (0.299, 0.587, 0.114) in float32. Whole-image copies
    (float64 (H, W, 3), then luma) cost 2.4 GB at peak for a 7000x7000 RGB PNG; by bands the
    peak is the decoded image plus the output (about 8 bytes a pixel).
    """
    mode = img.mode
    width, height = img.size
    out = np.empty((height, width), dtype=np.float32)
    for top in range(0, height, _BAND_ROWS):
        band = img.crop((0, top, width, min(top + _BAND_ROWS, height)))
        rgb = band if band.mode == "RGB" else band.convert("RGB")
        out[top : top + rgb.size[1]] = np.asarray(rgb.convert("F"), dtype=np.float32)
    out /= np.float32(255.0)
    return np.clip(out, 0.0, 1.0, out=out), f"{mode} (to gray)"


def _sixteen_bit(img: Any, head: bytes) -> tuple[np.ndarray, str, int]:
    arr = np.asarray(img)
    if arr.dtype.kind not in "ui":
        arr = arr.astype(np.int64)
    sbit = png_significant_bits(head) if head.startswith(PNG_MAGIC) else None
    bits = 16
    if sbit is not None and 0 < sbit < 16 and int(arr.max(initial=0)) <= 2**sbit - 1:
        bits = sbit
    return _unit_float32(arr, float(2**bits - 1)), img.mode, bits


def _to_pixels(img: Any, head: bytes) -> tuple[np.ndarray, str, int, list[str]]:
    """Decoded pixels in [0, 1] (float32), the photometric handled, bits per sample, notes."""
    notes: list[str] = []
    mode = img.mode
    if mode == "1":
        return np.asarray(img, dtype=np.float32), "1 (bilevel)", 1, notes
    if mode == "L":
        return _unit_float32(img, 255.0), "L", 8, notes
    if mode == "LA":
        notes.append("alpha channel dropped")
        return _unit_float32(img.getchannel("L"), 255.0), "LA (alpha dropped)", 8, notes
    if mode.startswith("I"):
        pixels, handled, bits = _sixteen_bit(img, head)
        if bits != 16:
            notes.append(f"PNG sBIT says {bits} significant bits; scaled by {2**bits - 1}")
        return pixels, handled, bits, notes
    if mode in ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
        pixels, handled = _grey_from_colour(img)
        notes.append(f"{mode} converted to grey with ITU-R BT.601 luma" + (", alpha dropped" if "A" in mode else ""))
        return pixels, handled, 8, notes
    raise UnsupportedFormatError(f"unsupported image mode {mode!r}; save the radiograph as 8- or 16-bit greyscale PNG")


def load_raster(source: Path | bytes, *, max_pixels: int, name: str) -> LoadedImage:
    """Decode a PNG or JPEG radiograph; refuse too-large images from the header."""
    head = _read_head(source)
    img = _open(source, name)
    try:
        fmt = ACCEPTED_FORMATS.get(str(img.format))
        if fmt is None:
            raise UnsupportedFormatError(f"{name} is {img.format}, not PNG or JPEG; convert it to PNG (or send DICOM)")
        width, height = img.size
        if width * height > max_pixels:
            raise ImageTooLargeError(
                f"{name} is {width}x{height} = {width * height:,} pixels, more than the limit of {max_pixels:,}; "
                "downsample it first or raise RADCLIP_MAX_IMAGE_PIXELS")
        try:
            img.load()
            pixels, photometric, bits, notes = _to_pixels(img, head)
        except (OSError, SyntaxError, ValueError, zlib.error, struct.error) as exc:
            raise CorruptImageError(f"{name}: the {fmt.upper()} pixel data cannot be decoded ({exc}); the file is damaged or truncated, re-export it") from None
        extra: dict[str, Any] = {"notes": notes}
        orientation = img.getexif().get(_EXIF_ORIENTATION) if fmt == "jpeg" else None
        if orientation not in (None, 1):
            extra["exif_orientation"] = int(orientation)
            notes.append(f"EXIF orientation {orientation} ignored: pixels are kept as stored")
        if "dpi" in img.info:
            extra["dpi"] = [float(v) for v in img.info["dpi"]]
    finally:
        img.close()
    meta = ImageMeta(source_format=fmt, photometric=photometric, original_shape=(height, width), bits_stored=bits, extra=extra)
    return LoadedImage(pixels=np.ascontiguousarray(pixels, dtype=CONTRACT_DTYPE), meta=meta)
