"""One entry point for every input: :func:`load_image` sniffs the bytes and dispatches.

The format is decided by content, never by the file name: ``DICM`` at offset 128 (or a
preamble-less DICOM data set), PNG or JPEG magic bytes. The name (or ``filename_hint``)
is used only in error messages.
"""

from __future__ import annotations

import threading
from pathlib import Path

from radclip.io.contract import LoadedImage
from radclip.io.errors import EmptyFileError, UnsupportedFormatError

DICOM_PREAMBLE = 128
_HEAD_BYTES = 132
# Decodes running at once in this process. Each may peak at about 9 bytes per pixel of the pixel
# limit (docs/reliability.md), so this bounds the total; further callers wait their turn.
MAX_CONCURRENT_DECODES = 2
_decode_slots = threading.BoundedSemaphore(MAX_CONCURRENT_DECODES)


def set_max_concurrent_decodes(n: int) -> None:
    """Allow ``n`` decodes at once from now on (call at start-up, before any decode runs)."""
    global _decode_slots
    if n < 1:
        raise ValueError(f"max concurrent decodes must be at least 1, got {n}")
    _decode_slots = threading.BoundedSemaphore(n)
# First groups a data set without preamble/meta usually starts with: (0002,xxxx) meta or (0008,xxxx).
_RAW_DICOM_GROUPS = (b"\x02\x00", b"\x08\x00")


def sniff_format(head: bytes) -> str | None:
    """``"dicom"``, ``"dicom-raw"`` (no preamble), ``"png"``, ``"jpeg"``, or ``None`` from the first 132 bytes."""
    from radclip.io.raster import JPEG_MAGIC, PNG_MAGIC

    if head[DICOM_PREAMBLE:_HEAD_BYTES] == b"DICM":
        return "dicom"
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if len(head) >= 8 and head[:2] in _RAW_DICOM_GROUPS and int.from_bytes(head[2:4], "little") < 0x0100:
        return "dicom-raw"
    return None


def _describe(head: bytes) -> str:
    sample = head[:64]
    if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        return f"it looks like text: {sample[:24].decode('ascii', 'replace')!r}"
    return f"it starts with {sample[:8]!r}"


def _read_head(source: Path | bytes) -> bytes:
    if isinstance(source, bytes):
        return source[:_HEAD_BYTES]
    with open(source, "rb") as fh:
        return fh.read(_HEAD_BYTES)


def load_image(
    source: str | Path | bytes | bytearray | memoryview,
    *,
    max_pixels: int | None = None,
    filename_hint: str | None = None,
) -> LoadedImage:
    """Load a DICOM, PNG or JPEG radiograph as a contract :class:`LoadedImage`.

    ``source`` is a path or the file's bytes. ``max_pixels`` (default: the
    ``RADCLIP_MAX_IMAGE_PIXELS`` setting) is checked from the header before decoding.
    Raises a :class:`radclip.io.errors.RadclipInputError` subclass for bad input,
    :class:`radclip.io.errors.MissingDependencyError` when a decoder plug-in is missing,
    and ``FileNotFoundError`` / ``IsADirectoryError`` for a bad path.
    """
    if max_pixels is None:
        from radclip.settings import get_settings

        max_pixels = get_settings().max_image_pixels
    data: Path | bytes
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = filename_hint or "the uploaded file"
    else:
        data = Path(source)
        name = filename_hint or str(data)
        if not data.exists():
            raise FileNotFoundError(f"{data} does not exist; check the path")
        if data.is_dir():
            raise IsADirectoryError(f"{data} is a folder; pass one image file")
    head = _read_head(data)
    if not head:
        raise EmptyFileError(f"{name} is empty (0 bytes); the upload or copy failed, send the file again")
    kind = sniff_format(head)
    if kind in ("dicom", "dicom-raw"):
        from radclip.io.dicom import load_dicom

        with _decode_slots:
            return load_dicom(data, max_pixels=max_pixels, name=name, force=kind == "dicom-raw")
    if kind in ("png", "jpeg"):
        from radclip.io.raster import load_raster

        with _decode_slots:
            return load_raster(data, max_pixels=max_pixels, name=name)
    raise UnsupportedFormatError(
        f"{name} is not DICOM, PNG or JPEG ({_describe(head)}); send a DICOM (.dcm) radiograph or a PNG/JPEG export")


def load_image_bytes(data: bytes, *, filename_hint: str | None = None, max_pixels: int | None = None) -> LoadedImage:
    """:func:`load_image` for an in-memory upload."""
    return load_image(data, max_pixels=max_pixels, filename_hint=filename_hint)
