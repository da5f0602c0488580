"""The opt-in ``kermany`` training source: a capped, seeded sample with honest label vectors and child captions."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radclip.eval.prompt_sets import all_eval_prompts, leaked_prompts
from radclip.io.labels import NIH_LABELS
from radclip.models.prompts import FINDING_PHRASES
from radclip.train import clip_data
from radclip.train.clip_data import PEDIATRIC_PREFIX, build_sources, kermany_captions

PNEU = NIH_LABELS.index("Pneumonia")


def _write_kermany(root: Path, n: int = 12) -> Path:
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    findings = ["Pneumonia (bacterial)", "Pneumonia (viral)", "No finding"]
    rows = []
    for i in range(n):
        path = f"images/k{i}.png"
        Image.fromarray((rng.random((24, 24)) * 255).astype(np.uint8)).save(root / path)
        row = {
            "image_id": f"k{i}",
            "source": "kermany",
            "path": path,
            "patient_id": f"p{i}",
            "split": "train",
        }
        row |= {lab: "" for lab in NIH_LABELS} | {"no_finding": "", "report": "", "finding": findings[i % 3]}
        rows.append(row)
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def test_labels_say_only_what_the_source_labels(tmp_path: Path) -> None:
    manifest = _write_kermany(tmp_path)
    src = build_sources(manifest, manifest.parent, None, "train", ("kermany",), 16, 3, 0)
    assert len(src.images) == 12 and not src.image_paired.any()
    pneumonia = src.image_labels[:, PNEU] == 1
    assert pneumonia.sum() == 8  # bacterial + viral
    pos, neg = src.image_labels[pneumonia], src.image_labels[~pneumonia]
    assert (pos[:, -1] == 0).all() and np.isnan(np.delete(pos[:, :14], PNEU, axis=1)).all()
    assert (neg[:, :14] == 0).all() and (neg[:, -1] == 1).all()
    for i, own in enumerate(src.image_texts):
        caps = [src.texts[t] for t in own]
        assert all(c.startswith(PEDIATRIC_PREFIX) for c in caps)
        named = any(p in c for c in caps for p in FINDING_PHRASES["Pneumonia"])
        assert named == bool(pneumonia[i])


def test_sample_is_capped_and_seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = _write_kermany(tmp_path, n=30)
    monkeypatch.setattr(clip_data, "KERMANY_TRAIN_IMAGES", 7)

    def sample(seed: int) -> np.ndarray:
        return build_sources(manifest, manifest.parent, None, "train", ("kermany",), 16, 2, seed).images

    a, b, c = sample(0), sample(0), sample(1)
    assert len(a) == 7
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unknown_source_names_the_choices(tmp_path: Path) -> None:
    manifest = _write_kermany(tmp_path)
    with pytest.raises(ValueError, match="kermany"):
        build_sources(manifest, manifest.parent, None, "train", ("pediatric",), 16)


def test_child_captions_never_contain_an_evaluation_prompt() -> None:
    import random

    caps = [c for per in kermany_captions(np.array([1, 0] * 50), 4, random.Random(0)) for c in per]
    assert len(set(caps)) > 20
    assert leaked_prompts(all_eval_prompts(), caps) == []
