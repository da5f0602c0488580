"""build_eda_report on small manifests: files written, numbers equal independent pandas counts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from radclip.eval.eda import build_eda_report, count_tokens, label_counts, rare_conditions
from radclip.io.labels import NIH_LABELS
from radclip.io.manifest import read_manifest

FIGURES = ("label_frequency.png", "samples.png", "report_lengths.png", "intensity.png")


def _synthetic(tmp_path: Path) -> tuple[pd.DataFrame, Path]:
    root = tmp_path / "cxr"
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(6):
        value = 40 * (i + 1)  # constant images: mean pixel = value / 255 exactly, std = 0
        Image.fromarray(np.full((32, 32), value, dtype=np.uint8), mode="L").save(root / "images" / f"im{i}.png")
        nih = i < 4
        rows.append({
            "image_id": f"im{i}", "source": "nih" if nih else "covid", "path": f"images/im{i}.png", "patient_id": f"p{i}",
            "split": "train" if i % 2 == 0 else "test",
            **{name: (1.0 if (name == "Effusion" and i in (0, 1, 2)) else 0.0) if nih else np.nan for name in NIH_LABELS},
            "no_finding": 1.0 if i == 3 else (0.0 if nih else np.nan), "report": "" if nih else "one two three four",
            "finding": "COVID-19" if not nih else "",
        })
    return pd.DataFrame(rows), root


def test_synthetic_report_numbers(tmp_path: Path) -> None:
    frame, root = _synthetic(tmp_path)
    index = build_eda_report(frame, root, tmp_path / "out")
    out = index.parent
    assert index.name == "index.html" and all((out / f).stat().st_size > 1000 for f in FIGURES)
    data = json.loads((out / "eda.json").read_text())
    assert data["label_counts"]["Effusion"] == {"train": 2, "test": 1, "all": 3}
    assert data["images_by_source_split"] == {"covid": {"test": 1, "train": 1}, "nih": {"test": 2, "train": 2}}
    assert data["report_tokens"]["manifest reports"]["median"] == 4.0
    np.testing.assert_allclose(data["intensity"]["nih"]["mean"]["mean"], np.mean([40, 80, 120, 160]) / 255, atol=1e-4)
    assert data["intensity"]["covid"]["std"]["max"] == 0.0
    rare = {r["condition"]: r for r in data["rare_conditions"]}
    assert rare["Effusion"]["all"] == 3 and rare["COVID-19"]["all"] == 2 and "no_finding" not in rare
    page = index.read_text()
    assert "<b id='n_images'>6</b>" in page and all(f in page for f in FIGURES)


def test_count_tokens() -> None:
    assert count_tokens("No pleural effusion; heart size 1.5 cm, patient's x-ray.") == 11
    assert count_tokens("") == 0


def test_real_subset_matches_pandas(cxr_manifest: Path, tmp_path: Path) -> None:
    full = read_manifest(cxr_manifest)
    subset = pd.concat([full[full.source == s].head(5) for s in ("nih", "covid", "figure1", "actualmed")])  # 20 rows
    assert len(subset) == 20
    index = build_eda_report(subset, cxr_manifest.parent, tmp_path / "eda")
    data = json.loads((index.parent / "eda.json").read_text())
    raw = pd.read_csv(cxr_manifest).set_index("image_id").loc[subset["image_id"]]
    for label in (*NIH_LABELS, "no_finding"):
        assert data["label_counts"][label]["all"] == int((raw[label] == 1).sum())
    assert data["n_images"] == 20 and int(re.search(r"id='n_images'>(\d+)<", index.read_text()).group(1)) == 20
    assert data["report_tokens"]["manifest reports"]["n"] == int(raw["report"].notna().sum())
    assert {s: sum(v.values()) for s, v in data["images_by_source_split"].items()} == {s: 5 for s in ("nih", "covid", "figure1", "actualmed")}


def test_rare_and_counts_on_full_manifest(cxr_manifest: Path) -> None:
    frame = read_manifest(cxr_manifest)
    counts = label_counts(frame)
    nih = frame[frame.source == "nih"]
    for label in NIH_LABELS:  # an independent pandas count per split
        want = {s: int(nih.loc[nih.split == s, label].sum()) for s in ("train", "val", "test")}
        assert counts[label] == {**want, "all": sum(want.values())}
    rare = {r["condition"] for r in rare_conditions(frame) if r["source"] == "nih (label)"}
    assert rare == {label for label in NIH_LABELS if counts[label]["all"] < 100}
    assert rare and rare != set(NIH_LABELS)  # the shared data has both rare and common findings


def test_cli_writes_report_and_reports_bad_manifest(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from radclip.cli import main

    frame, root = _synthetic(tmp_path)
    frame.to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "cli_out"
    assert main(["eda", "--out", str(out), "--manifest", str(tmp_path / "m.csv"), "--images-root", str(root), "--no-reports"]) == 0
    assert json.loads((out / "eda.json").read_text())["label_counts"]["Effusion"]["all"] == 3
    assert main(["eda", "--out", str(out), "--manifest", str(tmp_path / "missing.csv")]) == 2
    assert "manifest not found" in capsys.readouterr().err
