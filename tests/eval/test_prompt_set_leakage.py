"""The evaluation prompt set never occurs among training captions, and is frozen."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from radclip.eval.prompt_sets import (
    EVAL_NEGATIVE_TEMPLATES,
    EVAL_PHRASES,
    EVAL_PROMPT_SET_SHA256,
    EVAL_TEMPLATES,
    all_eval_prompts,
    eval_negative_prompts,
    eval_positive_prompts,
    leaked_prompts,
    normalise_text,
    prompt_set_digest,
)
from radclip.io.labels import NIH_LABELS, NO_FINDING
from radclip.models.prompts import (
    FINDING_PHRASES,
    NEGATIVE_TEMPLATES,
    TEMPLATES,
    _bare,
    negative_prompts,
    positive_prompts,
)
from radclip.train.clip_data import nih_captions

SEEDS = range(10)


def _caption_units() -> list[str]:
    """Every sentence a training caption can be made of: each template x each phrase, each negation."""
    units = [t.format(p) for t in TEMPLATES for phrases in FINDING_PHRASES.values() for p in phrases]
    units += [
        t.format(_bare(p)) for t in NEGATIVE_TEMPLATES for lab in NIH_LABELS for p in FINDING_PHRASES[lab]
    ]
    return units


def _label_vectors() -> np.ndarray:
    rng = np.random.default_rng(0)
    rows = [np.zeros(14), np.ones(14), *np.eye(14), *(rng.random((300, 14)) < 0.15)]
    return np.asarray(rows, np.float32)


def _trainer_captions(labels: np.ndarray, seeds: range = SEEDS) -> list[str]:
    """The captions ``build_sources`` makes, for every seed, with negation captions on."""
    caps: list[str] = []
    for seed in seeds:
        rng, neg_rng = random.Random(seed), random.Random(f"negation-{seed}")
        for per_image in nih_captions(labels, 4, rng, n_neg=2, neg_rng=neg_rng):
            caps += per_image
    return caps


def test_no_eval_prompt_occurs_in_any_training_caption() -> None:
    captions = _caption_units() + _trainer_captions(_label_vectors())
    assert leaked_prompts(all_eval_prompts(), captions) == []


def test_the_check_catches_the_training_prompts() -> None:
    """Today's (training-worded) prompts must be flagged: 84 of 84 positives, every negative."""
    captions = _caption_units() + _trainer_captions(_label_vectors())
    old_pos = [p for lab in NIH_LABELS for p in positive_prompts(lab)]
    old_neg = [p for lab in NIH_LABELS for p in negative_prompts(lab)]
    assert len(leaked_prompts(old_pos, captions)) == len(old_pos) == 84
    assert len(leaked_prompts(old_neg, captions)) == len(old_neg)
    # the trainer's own captions alone (seed 0, no exhaustive units) already contain most of them
    assert len(leaked_prompts(old_pos, _trainer_captions(_label_vectors(), range(1)))) >= 48


def test_templates_and_phrases_are_new() -> None:
    train_templates = {normalise_text(t.format("X")) for t in (*TEMPLATES, *NEGATIVE_TEMPLATES)}
    eval_templates = {normalise_text(t.format("X")) for t in (*EVAL_TEMPLATES, *EVAL_NEGATIVE_TEMPLATES)}
    assert not train_templates & eval_templates
    train_phrases = {normalise_text(_bare(p)) for ps in FINDING_PHRASES.values() for p in ps}
    eval_phrases = {normalise_text(_bare(p)) for ps in EVAL_PHRASES.values() for p in ps}
    assert not train_phrases & eval_phrases


def test_set_is_frozen_and_complete() -> None:
    assert prompt_set_digest() == EVAL_PROMPT_SET_SHA256, (
        "the evaluation prompt set changed: give it a new name and re-measure instead of editing it in place"
    )
    for cond in (*NIH_LABELS, NO_FINDING, "pediatric_pneumonia", "covid19"):
        pos, neg = eval_positive_prompts(cond), eval_negative_prompts(cond)
        assert len(set(pos)) >= 10 and len(set(neg)) >= 5 and not set(pos) & set(neg)
    with pytest.raises(KeyError, match="frozen set covers"):
        eval_positive_prompts("Hernias")


def test_real_train_captions_and_texts_do_not_contain_eval_prompts(
    cxr_manifest: Path, data_root: Path
) -> None:
    """On the shared data: the captions of the real NIH train labels, the covid notes and the IU reports."""
    import pandas as pd

    frame = pd.read_csv(cxr_manifest, dtype=str, keep_default_na=False)
    nih = frame[(frame["source"] == "nih") & (frame["split"] == "train")]
    labels = nih[list(NIH_LABELS)].astype(float).to_numpy(np.float32)
    texts = _trainer_captions(labels, range(3)) + [r for r in frame["report"] if r.strip()]
    iu = data_root / "text" / "iu_reports.csv"
    if iu.is_file():
        texts += list(pd.read_csv(iu, dtype=str, keep_default_na=False)["report"])
    assert leaked_prompts(all_eval_prompts(), texts) == []
