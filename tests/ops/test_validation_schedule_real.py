"""One real scheduled validation on a tiny NIH val subset: a worse triage head fails the gate and its images are logged for review."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FINDINGS = ("Effusion", "Infiltration", "Atelectasis", "Nodule")  # >= 3 positive patients each in the subset
PER_FINDING, NEGATIVES = 4, 12


@pytest.fixture(scope="module")
def tiny_set(cxr_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest: NIH train rows (only read, for the train prevalence the gate's calibration uses) + ~28 NIH val images."""
    with cxr_manifest.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    val = [r for r in rows if r["split"] == "val" and r["source"] == "nih"]
    chosen: dict[str, dict[str, str]] = {}
    for finding in FINDINGS:
        patients = {chosen[i]["patient_id"] for i in chosen if chosen[i][finding] == "1"}
        for r in val:
            if len(patients) >= PER_FINDING:
                break
            if r[finding] == "1" and r["patient_id"] not in patients:
                chosen[r["image_id"]], _ = r, patients.add(r["patient_id"])
    for r in [r for r in val if r["no_finding"] == "1"][:NEGATIVES]:
        chosen[r["image_id"]] = r
    out = tmp_path_factory.mktemp("tiny_val") / "manifest.csv"
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)  # type: ignore[arg-type]
        w.writeheader()
        w.writerows(
            [r for r in rows if r["split"] == "train" and r["source"] == "nih"] + list(chosen.values())
        )
    return out


def _args(tiny: Path, images_root: Path, tmp: Path) -> list[str]:
    return ["monitor", "validate-schedule", "--manifest", str(tiny), "--images-root", str(images_root),
            "--baseline", str(tmp / "baseline.json"), "--history", str(tmp / "history.jsonl"), "--review-dir", str(tmp / "review"),
            "--metrics-port", "0", "--n-boot", "30", "--n-boot-diff", "200"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_scheduled_run_fails_with_a_worse_head_and_logs_the_images(
    tiny_set: Path, cxr_manifest: Path, changed_head_weights: Path, tmp_path: Path
) -> None:
    """Two real model passes (the baseline, one scheduled run); the passing case was run by hand on val (docs)."""
    from radclip.cli import main

    args = _args(tiny_set, cxr_manifest.parent, tmp_path)
    assert main([*args, "--write-baseline"]) == 0  # the shipped models' gate block on the subset
    baseline = json.loads((tmp_path / "baseline.json").read_text())
    assert baseline["split"] == "val" and baseline["n_images"] == len(baseline["scores"]["image_ids"]) >= 20

    # The negated head ranks every finding in reverse; run in a fresh process to see every module the run imported.
    code = ("import json, sys; from radclip.cli import main; "
            f"code = main({[*args, '--once', '--triage-model', str(changed_head_weights)]!r}); "
            "print(json.dumps({'code': code, 'train': [m for m in sys.modules if m.startswith('radclip.train')]}))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"code": 1, "train": []}, out.stdout[-3000:] + out.stderr[-3000:]

    (run,) = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert run["exit_code"] == 1 and run["drift"]["concept"] and run["next_interval_s"] == 4 * 3600
    triage = [f for f in run["failed_findings"] if f["model"] == "triage"]
    assert triage and all(f["auc_drop"] > 0.02 for f in triage)
    # the image-text model did not change
    assert not [f for f in run["failed_findings"] if f["model"] == "zero-shot"]
    review = Path(run["review"])
    cases = list(csv.DictReader((review / "cases.csv").open()))
    assert {c["finding"] for c in cases} == {f["finding"] for f in triage}
    from safetensors.numpy import load_file

    emb = load_file(str(review / "embeddings.safetensors"))["image_embeddings"]
    assert len(emb) == len({c["image_id"] for c in cases})
    np.testing.assert_allclose(
        np.linalg.norm(emb, axis=1), 1.0, atol=1e-4
    )  # the pass's normalised embeddings
    for c in cases:  # negated head: the current logit is minus the baseline's
        assert float(c["current_score"]) == pytest.approx(-float(c["baseline_score"]), rel=1e-4, abs=1e-5)
