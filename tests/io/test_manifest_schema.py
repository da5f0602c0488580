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


def test_shared_manifest_counts(cxr_manifest: Path) -> None:
    frame = read_manifest(cxr_manifest)
    assert len(frame) == 1552
    counts = frame.groupby(["source", "split"]).size()
    # The data README's table.
    assert counts[("nih", "train")] == 604 and counts[("nih", "val")] == 96 and counts[("nih", "test")] == 177
    assert counts[("covid", "train")] == 404 and counts[("figure1", "test")] == 6 and counts[("actualmed", "val")] == 5
    nih = frame[frame.source == "nih"]
    # Label prevalence = an independent pandas computation on the raw CSV, and the README's numbers.
    raw = pd.read_csv(cxr_manifest)
    for label in NIH_LABELS:
        assert nih[label].sum() == raw.loc[raw.source == "nih", label].sum()
    assert int(nih.loc[nih.split == "train", "Effusion"].sum()) == 107
    assert int(nih["Hernia"].sum()) == 9
    assert int(nih["no_finding"].sum()) == 448
    # Other sources carry no NIH labels: NaN (unknown), never 0.
    other = frame[frame.source != "nih"]
    assert other[list(NIH_LABELS)].isna().all().all()
    assert not nih[list(NIH_LABELS)].isna().any().any()
