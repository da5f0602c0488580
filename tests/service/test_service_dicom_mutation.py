"""Structure-aware mutated DICOMs posted to ``/api/v1/screen`` on a real server: never a 5xx, never a dropped connection.

Each mutant starts from one valid synthetic DICOM (explicit VR little endian, 64x64, 12-bit) and changes
what a broken modality or PACS really sends: a header value (Rows, BitsStored, NumberOfFrames,
Photometric, window, rescale...), an element's VR, an element's length field, the transfer syntax (without
re-encoding the pixels), the pixel data (truncated, padded, emptied, random), a removed element, or a
damaged RLE fragment. The RNG is seeded, so a failure names a mutant that reproduces.
"""

from __future__ import annotations

import io
import struct
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

N_MUTANTS = 400
SEED = 20261202
LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UR", b"UT", b"UN", b"SV", b"UV"}
VRS = [b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB", b"OW", b"PN",
       b"SH", b"SL", b"SQ", b"SS", b"ST", b"TM", b"UI", b"UL", b"UN", b"US", b"UT", b"ZZ", b"\x00\x00"]  # fmt: skip
SYNTAXES = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.50",
            "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.5",
            "1.2.840.10008.1.2.4.201", "1.2.3.4.5", ""]  # fmt: skip
# Header values a damaged file carries: zero, negative, huge, wrong type, several values.
ODD_VALUES: dict[str, list[Any]] = {
    "Rows": [0, 1, 63, 65, 65535], "Columns": [0, 1, 65535, 3], "BitsAllocated": [0, 1, 7, 12, 32, 64],
    "BitsStored": [0, 1, 13, 16, 17, 32], "HighBit": [0, 15, 31, 200], "SamplesPerPixel": [0, 2, 3, 4],
    "PixelRepresentation": [1, 2, 255], "PhotometricInterpretation": ["MONOCHROME1", "RGB", "YBR_FULL", "PALETTE COLOR", "", "X"],
    "NumberOfFrames": ["0", "2", "-1", "abc", "1e9"], "WindowCenter": ["abc", "1e400", "-5", "nan"],
    "WindowWidth": ["0", "-1", "abc", "inf"], "RescaleSlope": ["0", "nan", "abc", "1e308"],
    "RescaleIntercept": ["inf", "abc"], "Modality": ["CT", "", "DXX", "SR"], "PlanarConfiguration": [1, 2],
    "PixelSpacing": ["0\\0", "abc", "1"], "PatientAge": ["abcY", "999Y", "-1Y"], "StudyDate": ["20201399", "x"],
}  # fmt: skip


def _valid() -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientSex, ds.PatientAge, ds.ViewPosition, ds.StudyDate = (
        "DX",
        "F",
        "045Y",
        "PA",
        "20200115",
    )
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.2", "1.2.826.0.1.3680043.8.498.3"
    ds.set_pixel_data(
        np.random.default_rng(3).integers(0, 4096, (64, 64)).astype(np.uint16), "MONOCHROME2", 12
    )
    ds.WindowCenter, ds.WindowWidth, ds.RescaleSlope, ds.RescaleIntercept, ds.PixelSpacing = (
        2048,
        4096,
        1,
        0,
        [0.2, 0.2],
    )
    bio = io.BytesIO()
    ds.save_as(bio, enforce_file_format=True)  # the one valid file: with its (0002,0000) group length
    return bio.getvalue()


def _save(ds: Any) -> bytes:
    bio = io.BytesIO()
    ds.save_as(bio, enforce_file_format=False)
    return bio.getvalue()


def _elements(data: bytes) -> list[tuple[int, bytes, int, int]]:
    """(offset, VR, length offset, length size) of each top-level explicit-VR element after the file meta."""
    out, pos = [], 132
    while pos + 8 <= len(data):
        vr = data[pos + 4 : pos + 6]
        long_form = vr in LONG_VRS
        size = 4 if long_form else 2
        len_at = pos + (8 if long_form else 6)
        length = int.from_bytes(data[len_at : len_at + size], "little")
        out.append((pos, vr, len_at, size))
        pos = len_at + size + length
    return out


def _dataset(data: bytes) -> Any:
    return pydicom.dcmread(io.BytesIO(data), force=True)


def _set_raw(ds: Any, key: str, value: Any) -> None:
    """Store ``value`` as the element's raw bytes: pydicom would refuse "abc" in a DS or IS if set normally."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    tag = Tag(tag_for_keyword(key))
    vr = dictionary_VR(tag)
    fmt = {"US": "<H", "SS": "<h", "UL": "<I", "SL": "<i"}.get(vr.split(" or ")[0])
    if fmt and isinstance(value, int):
        raw = struct.pack(fmt, value % (1 << (8 * struct.calcsize(fmt))) if fmt[-1] in "HI" else value)
    else:
        raw = str(value).encode()
        raw += b" " * (len(raw) % 2)
    ds[tag] = RawDataElement(tag, vr.split(" or ")[0], len(raw), raw, 0, False, True)


def mutate_value(rng: np.random.Generator, data: bytes) -> bytes:
    ds = _dataset(data)
    for _ in range(int(rng.integers(1, 3))):
        key = str(rng.choice(list(ODD_VALUES)))
        values = ODD_VALUES[key]
        _set_raw(ds, key, values[int(rng.integers(len(values)))])
    return _save(ds)


def mutate_vr(rng: np.random.Generator, data: bytes) -> bytes:
    offset, *_ = _elements(data)[int(rng.integers(len(_elements(data))))]
    vr = VRS[int(rng.integers(len(VRS)))]
    return data[: offset + 4] + vr + data[offset + 6 :]


def mutate_length(rng: np.random.Generator, data: bytes) -> bytes:
    elements = [e for e in _elements(data) if e[0] >= 132]
    _, _, len_at, size = elements[int(rng.integers(len(elements)))]
    current = int.from_bytes(data[len_at : len_at + size], "little")
    new = int(
        rng.choice(
            [0, 1, current - 1, current + 1, current * 2, (1 << (8 * size)) - 1, (1 << (8 * size)) - 2]
        )
    )
    new = max(new, 0) % (1 << (8 * size))
    return data[:len_at] + new.to_bytes(size, "little") + data[len_at + size :]


def mutate_syntax(rng: np.random.Generator, data: bytes) -> bytes:
    """Swap the (0002,0010) UID in the bytes (pydicom refuses to write native pixels under a compressed syntax)."""
    uid = SYNTAXES[int(rng.integers(len(SYNTAXES)))].encode()
    uid += b"\0" * (len(uid) % 2)
    at = data.index(b"\x02\x00\x10\x00UI")
    old_len = int.from_bytes(data[at + 6 : at + 8], "little")
    out = data[: at + 6] + len(uid).to_bytes(2, "little") + uid + data[at + 8 + old_len :]
    if out[132:138] != b"\x02\x00\x00\x00UL":  # no (0002,0000) group length to keep right
        return out
    group_len = int.from_bytes(out[140:144], "little") + len(uid) - old_len
    return out[:140] + group_len.to_bytes(4, "little") + out[144:]


def mutate_pixels(rng: np.random.Generator, data: bytes) -> bytes:
    ds = _dataset(data)
    pixels = bytes(ds.PixelData)
    kind = int(rng.integers(5))
    if kind == 0:
        ds.PixelData = pixels[: int(rng.integers(len(pixels)))]
    elif kind == 1:
        ds.PixelData = pixels + rng.bytes(int(rng.integers(1, 4096)))
    elif kind == 2:
        ds.PixelData = b""
    elif kind == 3:
        ds.PixelData = rng.bytes(len(pixels))
    else:
        del ds.PixelData
    return _save(ds)


def mutate_delete(rng: np.random.Generator, data: bytes) -> bytes:
    ds = _dataset(data)
    keys = [e.keyword for e in ds if e.keyword]
    for key in rng.choice(keys, size=min(len(keys), int(rng.integers(1, 4))), replace=False):
        delattr(ds, str(key))
    return _save(ds)


def mutate_rle(rng: np.random.Generator, data: bytes) -> bytes:
    ds = _dataset(data)
    ds.compress("1.2.840.10008.1.2.5")
    pixels = bytearray(ds.PixelData)
    for _ in range(int(rng.integers(1, 16))):  # inside the fragments, past the item headers
        pixels[int(rng.integers(16, len(pixels)))] = int(rng.integers(256))
    ds.PixelData = bytes(pixels)
    return _save(ds)


MUTATORS: list[Callable[[np.random.Generator, bytes], bytes]] = [
    mutate_value, mutate_vr, mutate_length, mutate_syntax, mutate_pixels, mutate_delete, mutate_rle,
]  # fmt: skip


def mutants(n: int = N_MUTANTS, seed: int = SEED) -> list[tuple[str, bytes]]:
    rng, base = np.random.default_rng(seed), _valid()
    out = []
    for i in range(n):
        mutator = MUTATORS[i % len(MUTATORS)]
        out.append((f"{i:03d}-{mutator.__name__}", mutator(rng, base)))
    return out


def test_mutants_are_distinct_and_structural() -> None:
    """The generator really mutates: nearly every mutant differs from the valid file and from the others."""
    made, base = mutants(), _valid()
    assert len(made) == N_MUTANTS
    assert sum(data != base for _, data in made) >= N_MUTANTS * 0.95
    assert len({data for _, data in made}) >= N_MUTANTS * 0.75  # 11 syntaxes repeat by design


def test_mutated_dicoms_never_get_a_5xx_or_a_dropped_connection(live_server) -> None:  # type: ignore[no-untyped-def]
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        for name, data in mutants():
            try:
                r = client.post("/api/v1/screen", content=data, headers={"content-type": "application/dicom"})
            except httpx.TransportError as exc:  # a dropped connection or a reset
                failures.append(f"{name}: {type(exc).__name__} {exc}")
                continue
            statuses[r.status_code] += 1
            if r.status_code >= 500:
                failures.append(f"{name}: {r.status_code} {r.text[:200]}")
            elif r.status_code >= 400:
                body = r.json()
                assert (
                    r.headers["content-type"].startswith("application/problem+json")
                    and body["detail"]
                    and body["fix"]
                ), name
        print(f"statuses of {N_MUTANTS} mutants: {dict(sorted(statuses.items()))}")  # shown with pytest -s
        alive = client.get("/healthz")
        valid = client.post("/api/v1/screen", content=_valid(), headers={"content-type": "application/dicom"})
    assert not failures, (
        f"{len(failures)} of {N_MUTANTS} mutants failed; statuses {dict(statuses)}:\n"
        + "\n".join(failures[:20])
    )
    assert alive.status_code == 200 and valid.status_code == 200, (alive.text, valid.text[:300])
    # Both outcomes happen: some mutants are still screenable, most are refused with a 4xx.
    assert statuses[200] > 0 and sum(v for k, v in statuses.items() if 400 <= k < 500) > N_MUTANTS // 4, dict(
        statuses
    )
