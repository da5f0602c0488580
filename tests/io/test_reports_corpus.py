"""ReportCorpus: cleaning, splits, MeSH reference, and the labeller measured against IU MeSH terms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radclip.io.labels import REPORT_LABELS
from radclip.io.reports import ReportCorpus, agreement_table, clean_report_text, mesh_present


def test_clean_report_text() -> None:
    assert clean_report_text("Normal chest x-XXXX.") == "Normal chest x-ray."
    assert clean_report_text("Heart XXXX, mediastinum, XXXX, normal.  XXXX are intact.") == "Heart, mediastinum, normal. are intact."
    assert clean_report_text("at XXXXPM today") == "at PM today"
    assert clean_report_text("") == ""


def test_mesh_present_needs_the_qualifier() -> None:
    assert mesh_present(["Thickening/pleura/apex/bilateral"], ["Thickening/pleura"])
    assert not mesh_present(["Thickening/bronchi"], ["Thickening/pleura"])
    assert mesh_present(["Cardiomegaly/borderline"], ["Cardiomegaly"])
    assert not mesh_present(["Pulmonary Edema"], ["Edema"])


def test_tiny_corpus(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    pd.DataFrame({
        "report_id": ["CXR1", "CXR2", "CXR3"],
        "findings": ["No pleural effusion.", "", "Small left effusion."],
        "impression": ["Normal chest x-XXXX.", "Cardiomegaly.", ""],
        "indication": ["XXXX-year-old male", "", "cough"],
        "mesh_major": ["normal", "Cardiomegaly/mild", "Pleural Effusion/left/small"],
        "split": ["train", "test", "train"],
    }).to_csv(path, index=False)
    corpus = ReportCorpus(path)
    assert len(corpus) == 3
    assert corpus[0] == {"report_id": "CXR1", "text": "No pleural effusion. Normal chest x-ray.", "indication": "-year-old male", "mesh": ["normal"], "split": "train"}
    labels = corpus.labels()
    assert corpus.labels() is labels and labels.shape == (3, 15)
    eff, card, nf = (REPORT_LABELS.index(n) for n in ("Effusion", "Cardiomegaly", "no_finding"))
    assert labels[0, eff] == 0 and labels[0, nf] == 1 and labels[1, card] == 1 and labels[2, eff] == 1
    mesh = corpus.mesh_labels()
    assert mesh[:, eff].tolist() == [0, 0, 1] and mesh[:, nf].tolist() == [1, 0, 0]
    table = {r["label"]: r for r in agreement_table(labels, mesh)}
    assert table["Effusion"]["recall"] == 1.0 and table["Cardiomegaly"]["precision"] == 1.0
    assert len(ReportCorpus(path, split="train")) == 2
    with pytest.raises(ValueError, match="split"):
        ReportCorpus(path, split="validation")


@pytest.fixture(scope="module")
def iu_csv(data_root: Path) -> Path:
    path = data_root / "text" / "iu_reports.csv"
    if not path.is_file():
        pytest.skip(f"IU reports not found at {path}")
    return path


def test_real_corpus_counts_and_cleaning(iu_csv: Path) -> None:
    corpus = ReportCorpus(iu_csv)
    assert len(corpus) == 3955  # the data README
    assert len(ReportCorpus(iu_csv, split="train")) == 2701 and len(ReportCorpus(iu_csv, split=["val", "test"])) == 438 + 816
    assert not any("XXXX" in t for t in corpus.texts)
    assert sum(t == "" for t in corpus.texts) == int(pd.read_csv(iu_csv)["report"].isna().sum())


def test_labeller_against_mesh_on_test_split(iu_csv: Path) -> None:
    """Measured on the test split (rules were written looking at train only); see docs/data.md.

    Measured: Cardiomegaly recall 0.940 (0.985 counting uncertain), precision 0.955; Effusion
    recall 1.000, precision 0.962; Atelectasis recall 0.944; Emphysema recall 0.958;
    no_finding recall 0.958. Thresholds leave a margin of ~0.05.
    """
    corpus = ReportCorpus(iu_csv, split="test")
    table = {r["label"]: r for r in agreement_table(corpus.labels(), corpus.mesh_labels())}
    assert table["Cardiomegaly"]["reference_pos"] == 67 and table["Effusion"]["reference_pos"] == 25
    assert table["Cardiomegaly"]["recall"] >= 0.89 and table["Cardiomegaly"]["recall_pos_or_unc"] >= 0.95
    assert table["Cardiomegaly"]["precision"] >= 0.90
    assert table["Effusion"]["recall"] >= 0.95 and table["Effusion"]["precision"] >= 0.90
    assert table["Atelectasis"]["recall"] >= 0.89 and table["Emphysema"]["recall"] >= 0.90
    assert table["no_finding"]["recall"] >= 0.90
    assert np.mean([table[n]["agreement"] for n in REPORT_LABELS[:14]]) >= 0.98
