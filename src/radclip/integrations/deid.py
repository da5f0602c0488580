"""De-identified copies of DICOM files for callers whose role may not see PHI (DICOM PS3.15 basic profile).

dicognito applies the basic de-identification profile: names, ids, dates, addresses and UIDs are
replaced by consistent fakes (seeded by the installation's PHI key, so one patient maps to one fake
across requests but cannot be linked back without the key); private tags are removed. Pixels are
untouched, so burned-in annotations are not removed (see docs/security.md).
"""

from __future__ import annotations

import io
from pathlib import Path


def deidentified_dicom(path: Path, seed: str) -> bytes:
    """The file at ``path`` with the basic profile applied; raises on a file that is not DICOM."""
    import pydicom
    from dicognito.anonymizer import Anonymizer

    ds = pydicom.dcmread(path)
    Anonymizer(seed=seed).anonymize(ds)
    ds.remove_private_tags()
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "DICOM PS3.15 basic profile (dicognito)"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
