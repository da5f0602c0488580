"""read_manifest: schema checks, NaN = unknown, and the shared manifest's real counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radclip.io.labels import NIH_LABELS
from radclip.io.manifest import ManifestError, labels_matrix, parse_age, read_manifest

HEADER = ["image_id", "source", "path", "patient_id", *NIH_LABELS, "no_finding"]


def _write(tmp_path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    path = tmp_path / "m.csv"
    pd.DataFrame(rows, columns=header).to_csv(path, index=False)
    return path


def test_missing_columns_are_named_with_the_schema(tmp_path: Path) -> None:
    path = _write(tmp_path, [["a", "nih", "x.png"]], header=["image_id", "source", "path"])
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    msg = str(err.value)
    assert "patient_id" in msg and "Atelectasis" in msg and "no_finding" in msg
    assert "expected a CSV with columns" in msg


def test_blank_labels_are_nan_and_split_is_optional(tmp_path: Path) -> None:
    labels = ["1", ""] + ["0"] * 12
    path = _write(tmp_path, [["a", "nih", "a.png", "p1", *labels, ""]])
    frame = read_manifest(path)
    assert frame.loc[0, "Atelectasis"] == 1.0
    assert np.isnan(frame.loc[0, "Cardiomegaly"]) and np.isnan(frame.loc[0, "no_finding"])
    assert frame.loc[0, "split"] == "" and frame.loc[0, "report"] == ""
    assert np.isnan(frame.loc[0, "age"])
    assert labels_matrix(frame).dtype == np.float32 and labels_matrix(frame).shape == (1, 14)


def test_bad_label_value_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, [["a", "nih", "a.png", "p1", "yes", *["0"] * 13, "0"]])
    with pytest.raises(ManifestError, match="Atelectasis.*'yes'"):
        read_manifest(path)
    path = _write(tmp_path, [["a", "nih", "a.png", "p1", "2", *["0"] * 13, "0"]])
    with pytest.raises(ManifestError, match="-1 \\(uncertain\\)"):
        read_manifest(path)


def test_duplicate_and_blank_ids_are_refused(tmp_path: Path) -> None:
    row = ["a", "nih", "a.png", "p1", *["0"] * 14, "1"]
    with pytest.raises(ManifestError, match="duplicate"):
        read_manifest(_write(tmp_path, [row, row]))
    with pytest.raises(ManifestError, match="patient_id"):
        read_manifest(_write(tmp_path, [["a", "nih", "a.png", "", *["0"] * 14, "1"]]))


def test_report_text_none_stays_text(tmp_path: Path) -> None:
    header = [*HEADER, "report", "age"]
    path = _write(tmp_path, [["a", "nih", "a.png", "p1", *["0"] * 14, "1", "None", "50+"]], header=header)
    frame = read_manifest(path)
    assert frame.loc[0, "report"] == "None"
    assert frame.loc[0, "age"] == 50.0


@pytest.mark.parametrize(("raw", "age"), [("46.0", 46.0), ("33", 33.0), ("67+", 67.0), ("early 40s", 40.0), ("?", float("nan"))])
def test_parse_age(raw: str, age: float) -> None:
    np.testing.assert_equal(parse_age(raw), age)


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="RADCLIP_DATA_ROOT"):
        read_manifest(tmp_path / "nope.csv")


def test_shared_manifest_properties(cxr_manifest: Path) -> None:
    """Properties of the shared data that hold in every data version (counts change; these must not)."""
    frame = read_manifest(cxr_manifest)
    raw = pd.read_csv(cxr_manifest, low_memory=False)
    assert len(frame) == len(raw) and frame["image_id"].is_unique
    assert set(frame["split"]) <= {"train", "val", "test"} and set(frame["source"]) >= {"nih"}
    # No patient in two splits (the data README's rule, which every evaluation here relies on).
    assert frame.groupby("patient_id")["split"].nunique().max() == 1
    # Patient ids carry their source prefix, so two sources never share a patient id.
    assert all(pid.startswith(src + "_") or pid.startswith(src) for pid, src in zip(frame.patient_id, frame.source, strict=True))
    nih = frame[frame.source == "nih"]
    for label in NIH_LABELS:
        assert set(nih[label].unique()) <= {0.0, 1.0}  # NIH labels are known 0/1 everywhere
        assert nih[label].sum() == raw.loc[raw.source == "nih", label].sum()  # independent pandas computation
    # Other sources carry no NIH labels: NaN (unknown), never 0.
    other = frame[frame.source != "nih"]
    assert other[list(NIH_LABELS)].isna().all().all()
    assert not nih[list(NIH_LABELS)].isna().any().any()
    # "No Finding" never co-occurs with a finding.
    assert not ((nih["no_finding"] == 1) & (nih[list(NIH_LABELS)].sum(axis=1) > 0)).any()
    assert (cxr_manifest.parent / frame["path"].iloc[0]).is_file()
