"""Reading and validating the image manifest (``cxr/manifest.csv``).

One row per image. The schema (see ``docs/data.md``):

* required: ``image_id``, ``source``, ``path`` (relative to the images root), ``patient_id``,
  the 14 NIH labels (:data:`~radclip.io.labels.NIH_LABELS`) and ``no_finding``;
* optional: ``split`` (train/val/test; absent or blank = usable in every split), ``report``,
  ``age``, ``sex``, ``view`` and any extra columns, which are kept as read.

Label cells are floats: ``1.0`` positive, ``0.0`` negative, ``-1.0`` uncertain and **NaN
(a blank cell) = unknown** - never "negative". Text cells are read verbatim ("None" and
"NA" stay strings), blank text becomes ``""``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from radclip.io.labels import NEGATIVE, NIH_LABELS, NO_FINDING, POSITIVE, UNCERTAIN

if TYPE_CHECKING:
    import pandas as pd

ID_COLUMNS: tuple[str, ...] = ("image_id", "source", "path", "patient_id")
LABEL_COLUMNS: tuple[str, ...] = (*NIH_LABELS, NO_FINDING)
REQUIRED_COLUMNS: tuple[str, ...] = (*ID_COLUMNS, *LABEL_COLUMNS)
TEXT_COLUMNS: tuple[str, ...] = ("split", "report", "sex", "view")
ALLOWED_LABEL_VALUES: frozenset[float] = frozenset({POSITIVE, NEGATIVE, UNCERTAIN})
SCHEMA_HELP = (
    "expected a CSV with columns image_id, source, path (relative to the images root), patient_id, "
    f"the 14 NIH labels ({', '.join(NIH_LABELS)}) and no_finding (1/0/-1, blank = unknown); "
    "optional: split (train/val/test), report, age, sex, view. See docs/data.md."
)


class ManifestError(ValueError):
    """The manifest does not follow the schema; the message says which rows/columns and why."""


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read ``path`` (a manifest CSV) and return a validated, normalised DataFrame."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path} (set RADCLIP_DATA_ROOT to the folder holding cxr/manifest.csv, or pass --manifest)")
    # keep_default_na=False: only truly blank cells are missing, so a report saying "None" stays text.
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:  # found by fuzz/fuzz_manifest.py
        raise ManifestError(f"{path}: not a readable CSV ({type(exc).__name__}: {str(exc).strip()[:200]}); "
                            f"save it as UTF-8 CSV with a header row. {SCHEMA_HELP}") from None  # fmt: skip
    return validate_manifest(frame, origin=str(path))


def validate_manifest(frame: pd.DataFrame, origin: str = "manifest") -> pd.DataFrame:
    """Check and normalise an in-memory manifest (a copy is returned; the input is not changed)."""
    import pandas as pd

    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(f"{origin}: missing column(s) {', '.join(missing)}; {SCHEMA_HELP}")
    out = frame.copy()
    for col in ID_COLUMNS:
        values = out[col]
        blank = values.isna() | (values.astype(str).str.strip() == "")
        if blank.any():
            rows = list(np.flatnonzero(blank.to_numpy())[:5])
            raise ManifestError(f"{origin}: column {col!r} is blank in row(s) {rows} (0-based); every image needs {', '.join(ID_COLUMNS)}")
        out[col] = values.astype(str)
    dup = out.duplicated(subset=["source", "image_id"], keep=False)
    if dup.any():
        raise ManifestError(f"{origin}: duplicate (source, image_id) {sorted(set(out.loc[dup, 'image_id']))[:5]}; each image must appear once")
    for col in LABEL_COLUMNS:
        out[col] = _label_column(out[col], col, origin)
    for col in TEXT_COLUMNS:
        out[col] = out[col].fillna("").astype(str).str.strip() if col in out.columns else ""
    for col in ("orig_width", "orig_height"):
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce")
    out["age"] = out["age"].map(parse_age).astype(np.float64) if "age" in out.columns else np.nan
    return out.reset_index(drop=True)


def _label_column(values: pd.Series, col: str, origin: str) -> pd.Series:
    import pandas as pd

    numeric = pd.to_numeric(values, errors="coerce").astype(np.float64)
    bad = numeric.isna() & values.notna()
    bad |= numeric.notna() & ~numeric.isin(list(ALLOWED_LABEL_VALUES))
    if bad.any():
        examples = sorted({str(v) for v in values[bad]})[:5]
        raise ManifestError(f"{origin}: label column {col!r} holds {examples}; labels must be 1 (positive), 0 (negative), -1 (uncertain) or blank (unknown)")
    return numeric


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parse_age(value: object) -> float:
    """Age in years from a manifest cell: the first number in it ("50+" -> 50, "early 40s" -> 40), NaN if none."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return float("nan")
    match = _NUMBER.search(str(value))
    return float(match.group()) if match else float("nan")


def labels_matrix(frame: pd.DataFrame) -> np.ndarray:
    """The (N, 14) float32 label matrix of a validated manifest, columns in NIH_LABELS order, NaN = unknown."""
    return frame.loc[:, list(NIH_LABELS)].to_numpy(dtype=np.float32, copy=True)


def data_snapshot(path: str | Path) -> str:
    """The identity of a manifest's data: ``sha256:<hex>`` of the file's bytes.

    Every measured number (model cards, the gate baseline) records it, so a number is only ever
    compared with one measured on the same data; a data version that changes the manifest changes it.
    """
    import hashlib

    p = Path(path)
    if not p.is_file():
        raise ManifestError(f"manifest not found: {p} (set RADCLIP_DATA_ROOT to the folder holding cxr/manifest.csv)")
    return "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()
