"""Negation-aware captions (``--negation-captions``) name only absent findings and leave the plain ones alone."""

from __future__ import annotations

import random
import re
from pathlib import Path

from tests.train.test_clip_train_synthetic import _write_data

from radclip.io.labels import NIH_LABELS
from radclip.models.prompts import FINDING_PHRASES, NEGATIVE_TEMPLATES, negated_caption


def _is_negation(sentence: str) -> bool:
    return any(
        re.fullmatch(re.escape(t).replace(re.escape("{}"), ".+"), sentence) for t in NEGATIVE_TEMPLATES
    )


def test_negated_caption_names_an_absent_finding() -> None:
    rng = random.Random(0)
    labels = [0.0] * 14
    labels[NIH_LABELS.index("Cardiomegaly")] = 1.0
    for _ in range(50):
        positive, _, negation = negated_caption(labels, rng=rng).partition(". ")
        assert any(p in positive for p in FINDING_PHRASES["Cardiomegaly"])
        assert _is_negation(negation)
        assert not any(p.removeprefix("an ") in negation for p in FINDING_PHRASES["Cardiomegaly"])
    for _ in range(20):  # a normal study: only the absence sentence
        assert _is_negation(negated_caption([0.0] * 14, rng=rng))


def test_plain_captions_unchanged_by_negations(tmp_path: Path) -> None:
    from radclip.train.clip_data import build_sources

    manifest, iu = _write_data(tmp_path / "data")
    plain = build_sources(manifest, manifest.parent, iu, "train", ("nih",), 32, 4, 0)
    neg = build_sources(manifest, manifest.parent, iu, "train", ("nih",), 32, 4, 0, negation_captions=2)
    assert set(plain.texts) < set(neg.texts)
    for own_plain, own_neg in zip(plain.image_texts, neg.image_texts, strict=True):
        plain_caps = {plain.texts[i] for i in own_plain}
        neg_caps = {neg.texts[i] for i in own_neg}
        assert plain_caps < neg_caps
        assert any(" no " in f" {c}" or c.endswith("is absent.") for c in neg_caps - plain_caps)
