"""DICOM radiographs -> :class:`~radclip.io.contract.LoadedImage`.

Grey levels follow the DICOM pipeline: stored value -> Modality LUT / rescale -> VOI LUT or
window -> [0, 1], then ``MONOCHROME1`` is inverted so 0 is always black. Everything that
can be refused from the header (no pixels, multi-frame, wrong modality, too many pixels,
missing decoder) is refused *before* pixel data is decoded. pydicom is imported here only,
and this module is imported only when a DICOM arrives.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from radclip.io.contract import CONTRACT_DTYPE, LoadedImage
from radclip.io.dicom_meta import meta_from_dataset
from radclip.io.errors import (
    CorruptImageError,
    EmptyFileError,
    ImageTooLargeError,
    MissingDependencyError,
    MultiFrameError,
    NotAnImageError,
    UnsupportedFormatError,
    UnsupportedModalityError,
)

# Modalities a chest radiograph can carry. "DR" is not a DICOM term but some vendors write it.
ACCEPTED_MODALITIES = frozenset({"CR", "DX", "DR", "RG", "OT"})
# SOP class name fragments of objects that are not images even if they arrive as .dcm.
NON_IMAGE_SOP_FRAGMENTS = (
    "Structured Report", "SR Storage", "Presentation State", "Key Object Selection",
    "Encapsulated", "Waveform", "Raw Data", "Spatial Registration", "Spatial Fiducials",
    "Segmentation", "Real World Value Mapping", "Surface", "Radiation Dose",
)
PIXEL_PLUGINS_INSTALL = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle"
# Elements bigger than this are read only when used, so a huge PixelData is never read for a refused file.
_DEFER_BYTES = 1024 * 1024
DEFLATED_UID = "1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian: the whole data set is zlib-deflated
# An inflated data set may hold max_pixels at up to 4 bytes each (16-bit grey, 8-bit RGB(A)) plus this much header.
_INFLATE_HEADER_BYTES = 16 * 1024 * 1024
_BAND_ROWS = 256  # rows mapped to grey at a time (bounds pydicom's float64 temporaries)


def inflate_limit(max_pixels: int) -> int:
    """Largest inflated Deflated-syntax data set accepted for an image of at most ``max_pixels``."""
    return max_pixels * 4 + _INFLATE_HEADER_BYTES


def check_inflated_size(data: bytes, *, name: str, limit: int) -> None:
    """Refuse a Deflated data set that inflates past ``limit`` bytes, before pydicom inflates it whole.

    pydicom calls ``zlib.decompress`` on the rest of the file with no bound (a 783 KB upload became
    1.4 GB); this streams the same inflate in 1 MiB pieces and keeps none of them.
    """
    import zlib

    from pydicom.filereader import _read_file_meta_info, read_preamble

    fp = io.BytesIO(data)
    try:
        read_preamble(fp, False)
        meta = _read_file_meta_info(fp)
    except Exception:  # not a well-formed Part 10 file: dcmread reports it with its own message
        return
    if str(meta.get("TransferSyntaxUID", "")) != DEFLATED_UID:
        return
    inflater, pending, total = zlib.decompressobj(-zlib.MAX_WBITS), data[fp.tell() :], 0
    while pending and not inflater.eof:
        try:
            total += len(inflater.decompress(pending, 1 << 20))
        except zlib.error as exc:
            raise CorruptImageError(f"{name}: the deflated data set cannot be inflated ({exc}); re-export the image") from None
        if total > limit:
            raise ImageTooLargeError(
                f"{name} is a Deflated DICOM that inflates to more than {limit:,} bytes, more than an image within "
                "the pixel limit needs; re-export it uncompressed or raise RADCLIP_MAX_IMAGE_PIXELS")
        pending = inflater.unconsumed_tail


def load_dicom(source: Path | bytes, *, max_pixels: int, name: str, force: bool = False) -> LoadedImage:
    """Decode one single-frame radiograph. ``force`` reads files without the 128-byte preamble."""
    ds = read_dataset(source, name=name, force=force, max_inflated=inflate_limit(max_pixels))
    if force and not any(keyword in ds for keyword in ("SOPClassUID", "Rows", "PixelData", "Modality")):
        raise UnsupportedFormatError(f"{name} is not a DICOM file (no DICOM preamble and no image attributes); send a DICOM Part 10 file, PNG or JPEG")
    check_is_radiograph(ds, name=name, max_pixels=max_pixels)
    guessed_syntax = _ensure_transfer_syntax(ds)
    stored = _decode(ds, name=name)
    try:
        pixels, photometric, windowing = to_unit_range(ds, stored)
    except (ValueError, NotImplementedError, AttributeError, IndexError, TypeError, OverflowError) as exc:
        raise CorruptImageError(
            f"{name}: the grey-level tags (rescale, window, VOI LUT) cannot be applied ({exc}); "
            "fix or remove them, or re-export the image") from None
    if not np.isfinite(pixels).all():  # e.g. RescaleSlope 1e308 overflows float32 (found by the HTTP mutation test)
        raise CorruptImageError(
            f"{name}: the grey-level tags give values that are not finite (RescaleSlope={ds.get('RescaleSlope')!s:.24}, "
            f"RescaleIntercept={ds.get('RescaleIntercept')!s:.24}); fix or remove them, or re-export the image")
    meta = meta_from_dataset(ds, photometric=photometric, windowing=windowing, shape=pixels.shape)
    if guessed_syntax:
        meta.extra["notes"].append(f"no file meta header; transfer syntax taken as {guessed_syntax}")
    return LoadedImage(pixels=pixels, meta=meta)


def _ensure_transfer_syntax(ds: Any) -> str | None:
    """Give a bare data set (no file meta) the transfer syntax it was read with; return its name if guessed."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if _transfer_syntax(ds) is not None:
        return None
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None or little is None:
        return None
    uid = ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid
    return str(uid.name)


def read_dataset(source: Path | bytes, *, name: str, force: bool = False, max_inflated: int | None = None) -> Any:
    """Parse the header (pixel data deferred for files); truncation becomes :class:`CorruptImageError`.

    ``max_inflated`` bounds a Deflated data set's inflated size (see :func:`check_inflated_size`).

    Warnings are not captured here (``warnings.catch_warnings`` is not thread-safe and the
    service loads images from worker threads); the structural checks below are enough.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    if isinstance(source, bytes) and not source:
        raise EmptyFileError(f"{name} is empty (0 bytes); send the whole DICOM file")
    if max_inflated is not None:
        head = source[:4096] if isinstance(source, bytes) else _file_head(source)
        if DEFLATED_UID.encode() in head:
            check_inflated_size(source if isinstance(source, bytes) else source.read_bytes(), name=name, limit=max_inflated)
    fp: Any = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        ds = pydicom.dcmread(fp, force=force, defer_size=_DEFER_BYTES)
        _convert_elements(ds)
    except InvalidDicomError as exc:
        raise UnsupportedFormatError(f"{name} is not a DICOM file ({exc}); send a DICOM Part 10 file, PNG or JPEG") from None
    except MemoryError:
        raise
    except Exception as exc:  # any parse failure of outside bytes: EOF, bad VR or length, unknown VR, too deep, ...
        raise CorruptImageError(f"{name}: the DICOM header cannot be parsed ({exc}); the file is damaged or truncated, re-export it from the source") from None
    if len(ds) == 0:  # pydicom returns an empty data set (with a warning) when the file ends mid-element
        raise CorruptImageError(f"{name}: the DICOM file is truncated (no data element could be read to the end); copy or re-export the complete file")
    return ds


def _convert_elements(ds: Any) -> None:
    """Convert every header element now (pixel data aside), so a damaged one fails here, as a corrupt header.

    pydicom converts raw elements on first access; left lazy, a bad VR or length surfaced later
    from any ``ds.get`` (e.g. reading PatientAge) as NotImplementedError or BytesLengthException.
    """
    meta = getattr(ds, "file_meta", None)
    for dataset in (meta, ds) if meta is not None else (ds,):
        for tag in list(dataset.keys()):
            if tag == 0x7FE00010:  # PixelData: decoded (or refused) later, never read for a refused file
                continue
            elem = dataset[tag]
            if elem.VR == "SQ":
                for item in elem.value:
                    _convert_elements(item)


def _file_head(path: Path, size: int = 4096) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(size)


def _sop_class_name(ds: Any) -> str:
    uid = ds.get("SOPClassUID") or (ds.file_meta.get("MediaStorageSOPClassUID") if hasattr(ds, "file_meta") else None)
    return str(getattr(uid, "name", uid or ""))


def header_int(ds: Any, keyword: str, *, name: str, default: int = 0) -> int:
    """One integer header value; a malformed one (text, several values) is a :class:`CorruptImageError`."""
    try:
        raw = ds.get(keyword)
    except (ValueError, TypeError, KeyError) as exc:  # pydicom converts IS/US values on access
        raise CorruptImageError(f"{name}: the {keyword} tag cannot be read as an integer ({exc}); fix the header or re-export the image") from None
    if raw is None or raw == "":
        return default
    if isinstance(raw, (list, tuple)) or type(raw).__name__ == "MultiValue":
        raise CorruptImageError(
            f"{name}: {keyword} holds {len(raw)} values ({list(raw)[:4]}), DICOM allows one; fix the header or re-export the image")
    try:
        return int(raw)
    except (ValueError, TypeError, OverflowError):
        raise CorruptImageError(f"{name}: {keyword} is {str(raw)[:40]!r}, not an integer; fix the header or re-export the image") from None


def check_is_radiograph(ds: Any, *, name: str, max_pixels: int) -> None:
    """Refuse, from the header alone, anything radclip cannot read as one chest radiograph."""
    sop_name = _sop_class_name(ds)
    non_image = any(fragment.lower() in sop_name.lower() for fragment in NON_IMAGE_SOP_FRAGMENTS)
    if non_image or "PixelData" not in ds:
        if not non_image and ("Rows" in ds or "Image Storage" in sop_name):
            raise CorruptImageError(
                f"{name} declares an image ({sop_name or 'Rows/Columns present'}) but has no Pixel Data; "
                "the file is truncated or was stripped, re-export it with pixel data")
        what = "is not a radiograph" if "PixelData" in ds else "has no pixel data (e.g. a report or presentation state)"
        raise NotAnImageError(f"{name} is a DICOM {sop_name or 'object'} and {what}; send the image object (CR/DX) itself")
    frames = header_int(ds, "NumberOfFrames", name=name, default=1)
    if frames > 1:
        raise MultiFrameError(
            f"{name} holds {frames} frames; radclip reads one radiograph per file, "
            "export the frame you want as a single-frame DICOM")
    modality = str(ds.get("Modality") or "").strip().upper()
    if modality and modality not in ACCEPTED_MODALITIES:
        raise UnsupportedModalityError(
            f"{name} has modality {modality}; radclip reads chest radiographs only "
            f"(accepted: {', '.join(sorted(ACCEPTED_MODALITIES))}), send a CR or DX image")
    rows, cols = header_int(ds, "Rows", name=name), header_int(ds, "Columns", name=name)
    if rows <= 0 or cols <= 0:
        raise CorruptImageError(f"{name} has Rows={rows}, Columns={cols}; the header is damaged, re-export the image")
    if rows * cols > max_pixels:
        raise ImageTooLargeError(
            f"{name} is {cols}x{rows} = {rows * cols:,} pixels, more than the limit of {max_pixels:,}; "
            "downsample it first or raise RADCLIP_MAX_IMAGE_PIXELS")


def _transfer_syntax(ds: Any) -> Any:
    meta = getattr(ds, "file_meta", None)
    return meta.get("TransferSyntaxUID") if meta is not None else None


def _decode(ds: Any, *, name: str) -> np.ndarray:
    """Stored values as an integer (or RGB) array; decoder problems become radclip errors."""
    from pydicom.pixels import get_decoder

    uid = _transfer_syntax(ds)
    if uid is not None:
        try:
            decoder = get_decoder(uid)
        except (NotImplementedError, TypeError, ValueError):  # TypeError: a damaged UID that is not text
            raise UnsupportedFormatError(
                f"{name} uses transfer syntax {getattr(uid, 'name', uid)}, which pydicom cannot decode; "
                "re-export it uncompressed or as JPEG / JPEG 2000 / RLE") from None
        if not decoder.is_available:
            raise MissingDependencyError(
                f"{name} is compressed with {uid.name} and no installed plug-in can decode it; "
                f"install the decoders with: {PIXEL_PLUGINS_INSTALL}")
    try:
        arr = ds.pixel_array
    except MemoryError:
        raise
    except Exception as exc:  # pydicom raises ValueError/RuntimeError/AttributeError/EOFError for bad data
        raise CorruptImageError(f"{name}: the pixel data cannot be decoded ({exc}); the file is damaged or truncated, re-export it") from None
    except BaseException as exc:  # a native decoder's panic: pyo3's PanicException (pylibjpeg-rle) is a BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        raise CorruptImageError(
            f"{name}: the pixel decoder failed on this data ({type(exc).__name__}: {exc}); the compressed pixel data is "
            "damaged, re-export the image") from None
    # No mask for unused high bits here: pydicom's decoders already clear them (``correct_unused_bits``,
    # native and RLE data; JPEG codestreams carry their own precision). tests/io pins that behaviour.
    return arr


def _stored_range(ds: Any) -> tuple[int, int]:
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _lut_probe(ds: Any, lo: int, hi: int) -> np.ndarray:
    """Stored values whose mapped outputs span the whole output range: the two ends, plus every
    LUT entry inside [lo, hi] when a Modality LUT is present. Bounded by the LUT's size (at most
    65,536 entries), never by the stored range: 2**BitsStored values would be a decompression bomb
    (BitsStored=32 -> a 32 GiB ``arange``)."""
    if not ds.get("ModalityLUTSequence"):
        return np.array([lo, hi], dtype=np.int64)
    desc = ds.ModalityLUTSequence[0].LUTDescriptor
    entries, first = int(desc[0]) or 2**16, int(desc[1])
    inside = np.arange(max(lo, first), min(hi, first + entries - 1) + 1, dtype=np.int64)
    return np.concatenate([np.array([lo, hi], dtype=np.int64), inside])


def _normalise(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = hi - lo
    if span == 0:
        return np.zeros(values.shape, dtype=CONTRACT_DTYPE)
    out = (np.asarray(values, dtype=np.float64) - lo) / span
    return np.clip(out, 0.0, 1.0).astype(CONTRACT_DTYPE)


def _window_output_range(ds: Any) -> tuple[float, float]:
    """The (y_min, y_max) pydicom's ``apply_windowing`` maps onto (same rule as pydicom 3)."""
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    lo, hi = _stored_range(ds)
    if ds.get("RescaleSlope") is not None and ds.get("RescaleIntercept") is not None:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        return lo * slope + intercept, hi * slope + intercept
    return float(lo), float(hi)


def _voi_lut(ds: Any, values: np.ndarray) -> tuple[np.ndarray, str]:
    from pydicom.pixels import apply_voi

    item = ds.VOILUTSequence[0]
    entries = int(item.LUTDescriptor[0]) or 2**16
    first = int(item.LUTDescriptor[1])
    # Scale by the LUT's own output range: many files declare 16-bit entries but hold 12-bit data.
    table = apply_voi(np.arange(first, first + entries, dtype=np.int64), ds).astype(np.float64)
    mapped = apply_voi(np.rint(values).astype(np.int64), ds)
    explanation = str(item.get("LUTExplanation") or "").strip()
    label = "VOI LUT" + (f" ({explanation})" if explanation else "")
    return _normalise(mapped, float(table.min()), float(table.max())), label


def _window(ds: Any, values: np.ndarray) -> tuple[np.ndarray, str]:
    from pydicom.pixels import apply_windowing

    centre_el, width_el = ds["WindowCenter"], ds["WindowWidth"]
    centre = float(centre_el.value[0]) if centre_el.VM > 1 else float(centre_el.value)
    width = float(width_el.value[0]) if width_el.VM > 1 else float(width_el.value)
    func = str(ds.get("VOILUTFunction") or "LINEAR").upper()
    y_lo, y_hi = _window_output_range(ds)
    windowed = apply_windowing(values, ds)
    label = f"window {centre:g}/{width:g}" + ("" if func == "LINEAR" else f" {func}")
    if centre_el.VM > 1:
        label += f" (first of {centre_el.VM})"
    return _normalise(windowed, y_lo, y_hi), label


def _to_grey_rgb(arr: np.ndarray, ds: Any) -> tuple[np.ndarray, str]:
    from pydicom.pixels import apply_color_lut

    photometric = str(ds.get("PhotometricInterpretation") or "").strip().upper()
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        hi = float(np.iinfo(arr.dtype).max) if arr.dtype.kind in "ui" else float(arr.max() or 1)
    else:
        hi = float(_stored_range(ds)[1])
    rgb = arr.astype(np.float64)[..., :3]
    luma = rgb @ np.array([0.299, 0.587, 0.114])  # ITU-R BT.601
    return _normalise(luma, 0.0, hi), f"{photometric or 'RGB'} (to gray)"


def to_unit_range(ds: Any, stored: np.ndarray) -> tuple[np.ndarray, str, str]:
    """Map stored values to [0, 1] float32 with 0 = black. Returns (pixels, photometric, windowing).

    Every step is per pixel, so it runs a band of rows at a time into one float32 output: pydicom's
    LUT and window functions work in float64 with several temporaries (about 30 bytes a pixel for
    a whole 49 Mpx image; by bands, the output and one band's temporaries).
    """
    photometric = str(ds.get("PhotometricInterpretation") or "MONOCHROME2").strip().upper()
    out = np.empty(stored.shape[:2], dtype=CONTRACT_DTYPE)
    windowing, handled = "", photometric
    for top in range(0, stored.shape[0], _BAND_ROWS):
        band = stored[top : top + _BAND_ROWS]
        if stored.ndim == 3 or photometric == "PALETTE COLOR":
            out[top : top + len(band)], handled = _to_grey_rgb(band, ds)
            windowing = "stored range (colour)"
        else:
            out[top : top + len(band)], windowing = _grey_band(ds, band)
    if handled != photometric:
        return out, handled, windowing
    if photometric == "MONOCHROME1":
        np.subtract(1.0, out, out=out)
        return out, "MONOCHROME1 (inverted)", windowing
    return out, photometric, windowing


def _grey_band(ds: Any, stored: np.ndarray) -> tuple[np.ndarray, str]:
    """Modality LUT / rescale, then VOI LUT, window or the stored range, for some rows of a grey image."""
    from pydicom.pixels import apply_modality_lut

    values = apply_modality_lut(stored, ds)
    has_voi_lut = bool(ds.get("VOILUTSequence")) and "LUTData" in ds.VOILUTSequence[0]
    if has_voi_lut:
        return _voi_lut(ds, values)
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        return _window(ds, values)
    lo, hi = _stored_range(ds)
    limits = apply_modality_lut(_lut_probe(ds, lo, hi), ds)
    y_lo, y_hi = float(np.min(limits)), float(np.max(limits))
    return _normalise(values, y_lo, y_hi), f"stored range [{y_lo:g}, {y_hi:g}]"
