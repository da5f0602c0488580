"""Zero-shot: prompt ensembling, scoring, measurable-label mean, prompt sets."""

from __future__ import annotations

import numpy as np
import pytest

from radclip.eval.zeroshot import class_embeddings, mean_measurable_auc, prompt_sensitivity, zeroshot_scores
from radclip.io.labels import NIH_LABELS
from radclip.models.prompts import (
    NEGATIVE_TEMPLATES,
    TEMPLATES,
    caption_for_labels,
    negative_prompts,
    positive_prompts,
)


def test_at_least_five_templates_per_condition() -> None:
    assert len(TEMPLATES) >= 5 and len(NEGATIVE_TEMPLATES) == len(TEMPLATES)
    for label in (*NIH_LABELS, "no_finding"):
        pos, neg = positive_prompts(label), negative_prompts(label)
        assert len(set(pos)) >= 5 and len(set(neg)) >= 5
        assert not set(pos) & set(neg)
    assert negative_prompts("Effusion")[0] == "chest x-ray showing no pleural effusion."
    assert negative_prompts("Mass")[3] == "there is no lung mass."  # article dropped after "no"


def test_caption_for_labels() -> None:
    import random

    lab = np.zeros(14)
    lab[[1, 2]] = 1  # Cardiomegaly, Effusion
    cap = caption_for_labels(lab, rng=random.Random(3))
    assert " and " in cap and any(p in cap for p in ("cardiomegaly", "heart", "cardiac"))
    normal = caption_for_labels(np.zeros(14), rng=random.Random(0))
    assert any(p in normal for p in ("normal", "clear", "no acute", "no active"))


def test_ensemble_is_mean_of_normalised_then_renormalised() -> None:
    # every prompt of a label is embedded to a fixed vector per template index, some not unit length
    def encode(texts: list[str]) -> np.ndarray:
        rows = []
        for i, _ in enumerate(texts):
            v = np.zeros(4, np.float32)
            v[i % 2] = 1.0 if i % 2 == 0 else 1.0
            rows.append(v)
        return np.stack(rows)

    pos, neg = class_embeddings(encode, ["Effusion"])
    # 6 prompts alternate e0, e1 -> mean (0.5, 0.5) -> renormalised (0.7071, 0.7071)
    assert np.allclose(pos[0], [2**-0.5, 2**-0.5, 0, 0], atol=1e-6)
    assert np.allclose(np.linalg.norm(pos, axis=1), 1.0)


def test_scores_and_measurable_mean() -> None:
    img = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)
    pos = np.array([[1.0, 0.0]], np.float32)
    neg = np.array([[0.0, 1.0]], np.float32)
    assert np.allclose(zeroshot_scores(img, pos, neg)[:, 0], [1.0, -1.0, -0.2])
    labels = np.array([[1, 1], [1, 0], [1, 1], [0, 0], [0, np.nan], [0, 0], [1, 0]], np.float32)
    scores = np.array(
        [[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.1, 0.4], [0.2, 0.5], [0.3, 0.6], [0.05, 0.7]], np.float32
    )
    # column 0: 4 pos, 3 neg; positives 0.9,0.8,0.7,0.05 vs negatives 0.1,0.2,0.3 -> 9 of 12 pairs ordered: 0.75
    # column 1: 2 positives only -> not measurable
    assert mean_measurable_auc(labels, scores) == pytest.approx(0.75)


def test_prompt_sensitivity_reports_every_template() -> None:
    rng = np.random.default_rng(0)
    table: dict[str, np.ndarray] = {}

    def encode(texts: list[str]) -> np.ndarray:
        out = [table.setdefault(t, rng.normal(size=8)) for t in texts]
        arr = np.stack(out).astype(np.float32)
        return arr / np.linalg.norm(arr, axis=1, keepdims=True)

    img = rng.normal(size=(30, 8)).astype(np.float32)
    labels = (rng.random((30, 2)) > 0.5).astype(np.float32)
    out = prompt_sensitivity(encode, img, labels, ["Effusion", "Mass"])
    assert set(out["mean_auc_per_template"]) == set(TEMPLATES)
    vals = list(out["mean_auc_per_template"].values())
    assert out["spread"] == pytest.approx(max(vals) - min(vals))


def test_cached_encoder_embeds_each_text_once() -> None:
    from radclip.eval.zeroshot import cached_encoder

    calls: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.asarray([[len(t), 1.0] for t in texts], np.float32)

    enc = cached_encoder(encode)
    first = enc(["a", "bb", "a"])
    again = enc(["bb", "ccc"])
    assert calls == [["a", "bb"], ["ccc"]]
    assert first[:, 0].tolist() == [1, 2, 1] and again[:, 0].tolist() == [2, 3]
