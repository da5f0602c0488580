"""Write each harness's seed corpus to fuzz/corpus/<harness>/ from the shared real files (derived, never copied).

Usage: python fuzz/make_seeds.py [--data ../shared/data]. Real files are shrunk (a 1024² DICOM becomes a
64² one with its real header) so libFuzzer's inputs stay small; seeds that need no data are written always.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIDE = 64  # pixels per side of a shrunk seed image

PATIENT = {"resourceType": "Patient", "id": "example", "gender": "female", "birthDate": "1974-12-25",
           "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
           "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}]}  # fmt: skip
STUDY = {"resourceType": "ImagingStudy", "id": "example", "status": "available", "subject": {"reference": "Patient/example"},
         "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:2.16.124.113543.6003.1154777499.30246.19789.3503430045"}],
         "started": "2011-01-01T11:01:20+03:00", "numberOfSeries": 1, "numberOfInstances": 1,
         "series": [{"uid": "2.16.124.113543.6003.2588828330.45298.17418.2723805630", "number": 3,
                     "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "DX"},
                     "instance": [{"uid": "2.16.124.113543.6003.189642796.63084.16748.2599092903", "number": 1,
                                   "sopClass": {"system": "urn:ietf:rfc:3986", "code": "urn:oid:1.2.840.10008.5.1.4.1.1.1.1"}}]}]}  # fmt: skip
QIDO_STUDY = {
    "0020000D": {"vr": "UI", "Value": ["1.2.840.113619.2.55.3"]},
    "00201208": {"vr": "IS", "Value": [2]},
}
QIDO_INSTANCE = {
    "0020000E": {"vr": "UI", "Value": ["1.2.3.4"]},
    "00080018": {"vr": "UI", "Value": ["1.2.3.4.5"]},
}


def _write(harness: str, name: str, data: bytes) -> None:
    folder = HERE / "corpus" / harness
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def _shrunk_dicom(path: Path, syntax: str | None) -> bytes:
    import pydicom
    from PIL import Image

    ds = pydicom.dcmread(path)
    small = np.asarray(Image.fromarray(ds.pixel_array).resize((SIDE, SIDE)))
    ds.set_pixel_data(small, ds.PhotometricInterpretation, int(ds.BitsStored))
    if syntax:
        ds.compress(syntax)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _raster(path: Path, fmt: str) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.open(path).resize((SIDE, SIDE)).save(out, fmt)
    return out.getvalue()


def image_seeds(data: Path) -> None:
    for dcm in sorted((data / "dicom").glob("*.dcm"))[:1]:
        _write("load_image", "real-dicom-64.dcm", _shrunk_dicom(dcm, None))
        _write("load_image", "real-dicom-64-rle.dcm", _shrunk_dicom(dcm, "1.2.840.10008.1.2.5"))
        raw = _shrunk_dicom(dcm, None)
        _write("load_image", "real-dicom-64-nopreamble.dcm", raw[132:])
    for pattern, fmt in (("cxr/images/nih/*.png", "PNG"), ("cxr/images/kermany/*.jpeg", "JPEG")):
        for i, path in enumerate(sorted(data.glob(pattern))[:2]):
            _write("load_image", f"real-{fmt.lower()}-{i}.{fmt.lower()}", _raster(path, fmt))


def text_seeds(data: Path) -> None:
    reports = data / "text" / "iu_reports.csv"
    if reports.is_file():
        with reports.open(newline="") as fh:
            for i, row in zip(range(8), csv.DictReader(fh), strict=False):
                _write("labeller", f"iu-{i}.txt", row["report"].encode())
    manifest = data / "cxr" / "manifest.csv"
    if manifest.is_file():
        lines = manifest.read_text().splitlines(keepends=True)
        _write("manifest", "real-head.csv", "".join(lines[:4]).encode())


def builtin_seeds() -> None:
    for which, resource in ((0, PATIENT), (1, STUDY)):
        _write(
            "fhir",
            f"hl7-{resource['resourceType'].lower()}.json",
            bytes([which]) + json.dumps(resource).encode(),
        )
    _write("fhir", "both.json", b"\x02" + json.dumps(PATIENT).encode() + b"\n" + json.dumps(STUDY).encode())
    boundary = b"radclipseed"
    part = (
        b"--"
        + boundary
        + b'\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n'
    )
    field = (
        b"--"
        + boundary
        + b'\r\nContent-Disposition: form-data; name="patient"\r\n\r\n'
        + json.dumps(PATIENT).encode()
    )
    _write(
        "upload",
        "multipart.bin",
        b"multipart/form-data; boundary=radclipseed\n"
        + part
        + b"\r\n"
        + field
        + b"\r\n--"
        + boundary
        + b"--\r\n",
    )
    _write("upload", "raw-dicom.bin", b"application/dicom\n" + b"\0" * 128 + b"DICM\xff" + b"\x02\x00")
    _write(
        "labeller",
        "synthetic.txt",
        b"No pneumothorax. Possible small left effusion? Cardiomegaly is present.",
    )
    _write("dicomweb", "qido-studies.json", b"\x00" + json.dumps([QIDO_STUDY]).encode())
    _write("dicomweb", "qido-instances.json", b"\x01" + json.dumps([QIDO_INSTANCE]).encode())
    _write(
        "dicomweb",
        "wado.bin",
        b'\x02multipart/related; type="application/dicom"; boundary=b1\n--b1\r\nContent-Type: application/dicom\r\n\r\nDICM\r\n--b1--',
    )
    header = "image_id,source,path,patient_id,split,Atelectasis,Cardiomegaly,Effusion,Infiltration,Mass,Nodule,Pneumonia,Pneumothorax,Consolidation,Edema,Emphysema,Fibrosis,Pleural_Thickening,Hernia,no_finding,age\n"
    _write("manifest", "synthetic.csv", (header + "a,nih,x.png,p1,train" + ",0" * 15 + ",50+\n").encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    args = parser.parse_args()
    builtin_seeds()
    if args.data.is_dir():
        image_seeds(args.data)
        text_seeds(args.data)
    else:
        print(f"no shared data at {args.data}: only the built-in seeds were written")


if __name__ == "__main__":
    main()
