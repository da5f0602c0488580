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


def test_ensemble_is_renormalised_mean_of_raw_prompt_embeddings() -> None:
    # prompts alternate e0 (length 1) and 3 * e1 (length 3); the code averages the raw vectors, then normalises
    def encode(texts: list[str]) -> np.ndarray:
        return np.stack([[1.0, 0, 0, 0] if i % 2 == 0 else [0, 3.0, 0, 0] for i in range(len(texts))]).astype(
            np.float32
        )

    n = len(positive_prompts("Effusion"))
    mean = np.array([(n + 1) // 2 * 1.0, n // 2 * 3.0, 0, 0]) / n  # 6 prompts: (0.5, 1.5) -> (0.3162, 0.9487)
    pos, neg = class_embeddings(encode, ["Effusion"])
    assert np.allclose(pos[0], mean / np.linalg.norm(mean), atol=1e-6)
    if n == 6:
        assert np.allclose(pos[0], [0.316228, 0.948683, 0, 0], atol=1e-6)
    # a mean of the normalised vectors would be (0.7071, 0.7071) for 6 prompts: the test tells them apart
    assert abs(pos[0, 1] - 2**-0.5) > 0.2
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


def test_prompt_sensitivity_golden_spread() -> None:
    # the first template pair points positives to e0 and negatives to e1 (score x0 - x1, AUC 1 on this data);
    # every other pair points them the other way (score x1 - x0, AUC 0): spread 1, std sqrt(n - 1) / n
    names = ["Effusion", "Mass"]
    toward_e0 = {p for lab in names for p in positive_prompts(lab, TEMPLATES[0])}
    toward_e0 |= {p for lab in names for t in NEGATIVE_TEMPLATES[1:] for p in negative_prompts(lab, t)}

    def encode(texts: list[str]) -> np.ndarray:
        return np.array([[1.0, 0.0] if t in toward_e0 else [0.0, 1.0] for t in texts], np.float32)

    img = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4, np.float32)
    labels = np.repeat(np.array([[1.0], [0.0]], np.float32), 4, axis=0).repeat(2, axis=1)
    out = prompt_sensitivity(encode, img, labels, names)
    n = len(TEMPLATES)
    assert out["mean_auc_per_template"] == {t: (1.0 if i == 0 else 0.0) for i, t in enumerate(TEMPLATES)}
    assert out["spread"] == pytest.approx(1.0)
    assert out["std"] == pytest.approx((n - 1) ** 0.5 / n)  # 6 templates: 0.372678


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
