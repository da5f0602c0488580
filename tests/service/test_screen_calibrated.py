"""Calibrated screening out of the box: shipped fits and reference, never statistics of the served corpus."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

DICOM_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "dicom"


class _RecordingScreener:
    def __init__(self) -> None:
        self.references: list[Any] = []

    def set_reference(self, reference: Any) -> None:
        self.references.append(reference)

    def matrix(self) -> None:
        return None


class _FakeIndex:
    """A StudyIndex stand-in whose vectors are the corpus it was opened on."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.index = SimpleNamespace(vectors_and_ids=lambda: (vectors, np.arange(len(vectors))))

    def open(self, records: Any, progress: Any = None, cancel: Any = None) -> Any:
        return SimpleNamespace(reason="built", live=len(records))


@pytest.mark.parametrize("seed", [0, 1])
def test_opening_the_served_corpus_never_changes_the_screening_reference(tmp_path: Path, seed: int) -> None:
    """Before the fix the warm-up fitted the label-free mapping on the indexed corpus (cxr/pool, the holdout)."""
    from radclip.service.state import ServiceState
    from radclip.settings import load_settings

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.png").write_bytes(b"")
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((80, 16)).astype(np.float32)
    state = ServiceState(settings=load_settings(home=tmp_path / "home", corpus=corpus))
    state.screener, state.index = _RecordingScreener(), _FakeIndex(vectors)
    state._open_index()
    assert state.warmup.state == "ready"
    assert state.screener.references == []  # the corpus being served is never used to fit anything


def _shipped_files() -> tuple[Path, Path, Any]:
    from radclip.models.registry import find_card
    from radclip.settings import load_settings

    card, card_file = find_card(load_settings().clip_model)
    return (
        card_file.parent / f"{card.name}.calibration.json",
        card_file.parent / f"{card.name}.reference.safetensors",
        card,
    )


def test_shipped_files_belong_to_the_shipped_model_and_the_right_splits() -> None:
    import json

    from radclip.engine.reference import load_reference

    cal_file, ref_file, card = _shipped_files()
    doc = json.loads(cal_file.read_text())
    assert doc["model_sha256"] == card.weights_sha256 and doc["split"] == "val"
    ref = load_reference(ref_file, card.weights_sha256)
    assert ref.split == "train" and ref.data_snapshot == doc["data_snapshot"]
    assert "pool" not in ref.sources.split(",") and ref.distribution.n >= 1000
    manifest = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cxr" / "manifest.csv"
    if manifest.is_file():
        import pandas as pd

        from radclip.io.manifest import data_snapshot

        frame = pd.read_csv(manifest, usecols=["split"])
        if data_snapshot(manifest) == ref.data_snapshot:  # the same data: the counts must match exactly
            assert ref.distribution.n == int((frame["split"] == "train").sum())


@pytest.mark.skipif(
    not DICOM_DIR.is_dir() or not any(DICOM_DIR.glob("*.dcm")), reason="shared real DICOM not present"
)
def test_fresh_service_screens_the_real_dicom_with_calibrated_confidences(tmp_path: Path) -> None:
    import json

    from fastapi.testclient import TestClient

    from radclip.service.app import create_app
    from radclip.settings import load_settings

    cal_file, _, _ = _shipped_files()
    shipped = set(json.loads(cal_file.read_text())["fits"])
    settings = load_settings(
        home=tmp_path / "empty-home", index_on_start=False, seed_conditions=True, backend="pytorch"
    )
    dcm = sorted(DICOM_DIR.glob("*.dcm"))[0].read_bytes()
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz").json()
        assert "reference" not in ready["load_errors"] and "calibration" not in ready["load_errors"]
        r = client.post("/api/v1/screen", content=dcm, headers={"content-type": "application/dicom"})
        assert r.status_code == 200, r.text
        body = r.json()
    findings = [f for f in body["findings"] if not f["suppressed"]]
    calibrated = {f["pathology"] for f in body["findings"] if f["calibrated"]}
    assert calibrated == shipped and {"Effusion", "no_finding", "covid19_pneumonia_pattern"} <= calibrated
    flags = [f["calibrated"] for f in findings]
    assert flags == sorted(flags, reverse=True)  # every calibrated finding ranks above every uncalibrated one
    assert all(("uncalibrated: similarity only" in f["notes"]) == (not f["calibrated"]) for f in findings)
    assert any("ranked after the calibrated ones" in c for c in body["caveats"])
    blind = {n for n, fit in json.loads(cal_file.read_text())["fits"].items() if fit["scale"] == 0}
    for f in body["findings"]:  # a base-rate fit (negative slope on val) is withheld, never shown as a finding
        assert (f["pathology"] in blind) <= (f["suppressed"] and "image_blind_calibration" in f["notes"])


def test_files_shipped_for_other_weights_are_refused_and_reported(
    tmp_path: Path, tiny_clip_weights: Path
) -> None:
    import shutil

    from radclip.engine.calibration import LogisticCalibration, save_shipped_calibrations
    from radclip.models.registry import find_card
    from radclip.service.state import ServiceState, _load_shipped
    from radclip.settings import load_settings

    for f in (tiny_clip_weights, tiny_clip_weights.with_name("tiny-clip.card.json")):
        shutil.copy(f, tmp_path / f.name)
    card, _ = find_card(tmp_path / tiny_clip_weights.name)
    state = ServiceState(settings=load_settings(home=tmp_path / "home"))
    assert _load_shipped(state, "calibration", str(tmp_path / tiny_clip_weights.name), card) is None
    assert state.load_errors == {}  # no file at all: the fallback mapping, not an error
    save_shipped_calibrations(tmp_path / "tiny-clip.calibration.json", {"a": LogisticCalibration(1.0, 0.0)},
                              {"a": np.ones(4)}, {"model_sha256": "0" * 64, "split": "val"})  # fmt: skip
    assert _load_shipped(state, "calibration", str(tmp_path / tiny_clip_weights.name), card) is None
    assert "rerun `radclip conditions calibrate --ship`" in state.load_errors["calibration"]
