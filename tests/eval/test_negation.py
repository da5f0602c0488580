"""The negation metric (hand-computed cases) and the frozen pair set (complete, pinned, unseen wording)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from radclip.eval.negation import evaluate_negation, negation_metrics
from radclip.eval.negation_pairs import (
    NEGATION_PAIRS,
    NEGATION_PAIRS_SHA256,
    all_pair_sentences,
    pair_set_digest,
)
from radclip.eval.prompt_sets import all_eval_prompts, leaked_prompts, normalise_text
from radclip.io.labels import NIH_LABELS
from radclip.models.prompts import FINDING_PHRASES, NEGATIVE_TEMPLATES, TEMPLATES, _bare
from radclip.train.clip_data import nih_captions


def test_blind_encoder_scores_pair_cosine_one_and_probe_zero() -> None:
    a = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]])
    out = negation_metrics(a, a.copy(), ["X", "X", "X"])
    assert out["pair_cosine"] == pytest.approx(1.0)
    assert out["probe_accuracy"] == 0.0  # a - n = 0: never ranked above
    # paraphrase cosine by hand: pairs (0,1)=0.8, (0,2)=0.6, (1,2)=0.96 -> per row means 0.7, 0.88, 0.78
    assert out["paraphrase_cosine"] == pytest.approx((0.7 + 0.88 + 0.78) / 3, abs=1e-4)
    assert out["gap"] == pytest.approx(out["paraphrase_cosine"] - 1.0, abs=1e-4)


def test_negation_aware_encoder_is_ranked_correctly() -> None:
    a = np.array([[1.0, 0.1], [1.0, -0.1], [1.0, 0.0], [0.1, 1.0], [-0.1, 1.0]])
    n = np.array([[-1.0, 0.1], [-1.0, -0.1], [-1.0, 0.0], [0.1, -1.0], [-0.1, -1.0]])
    out = negation_metrics(a, n, ["X", "X", "X", "Y", "Y"])
    assert out["probe_accuracy"] == 1.0
    assert out["pair_cosine"] < -0.9
    assert out["per_condition"]["Y"]["probe_accuracy"] == 1.0
    # unnormalised inputs give the same numbers: the metric normalises
    assert negation_metrics(3 * a, 0.5 * n, ["X", "X", "X", "Y", "Y"]) == out


def test_probe_is_leave_one_out() -> None:
    """The pair's own vectors are not in its probe: a pair pointing against the others is ranked wrong."""
    a = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    out = negation_metrics(a, -a, ["X"] * 4)
    # pairs 0-2: the others average to d = (2/3, 0), a - n = (2, 0): right; pair 3: d = (2, 0), a - n = (-2, 0): wrong
    assert out["probe_accuracy"] == 0.75


def test_single_pair_condition_is_refused() -> None:
    with pytest.raises(ValueError, match="one pair"):
        negation_metrics(np.eye(2), -np.eye(2), ["X", "Y"])


def test_evaluate_negation_uses_the_frozen_set() -> None:
    rng = np.random.default_rng(0)
    table: dict[str, np.ndarray] = {}

    def encode(texts: list[str]) -> np.ndarray:
        return np.stack([table.setdefault(t, rng.normal(size=8)) for t in texts])

    out = evaluate_negation(encode)
    assert out["n_pairs"] == len(NEGATION_PAIRS) and out["pair_set_sha256"] == NEGATION_PAIRS_SHA256


def test_pair_set_is_frozen_and_complete() -> None:
    assert pair_set_digest() == NEGATION_PAIRS_SHA256, (
        "the pair set changed: give it a new name and re-measure"
    )
    counts = Counter(c for c, _, _ in NEGATION_PAIRS)
    assert set(counts) == {*NIH_LABELS, "pediatric_pneumonia", "covid19"}
    assert min(counts.values()) >= 3
    sentences = all_pair_sentences()
    assert len(set(sentences)) == len(sentences)


def _training_captions() -> list[str]:
    units = [t.format(p) for t in TEMPLATES for ps in FINDING_PHRASES.values() for p in ps]
    units += [
        t.format(_bare(p)) for t in NEGATIVE_TEMPLATES for lab in NIH_LABELS for p in FINDING_PHRASES[lab]
    ]
    rows = np.vstack([np.zeros(14), np.eye(14), np.random.default_rng(0).random((200, 14)) < 0.15])
    for seed in range(3):
        for caps in nih_captions(
            rows.astype(np.float32), 4, random.Random(seed), 2, random.Random(f"negation-{seed}")
        ):
            units += caps
    return units


def test_pair_wording_is_neither_a_training_caption_nor_an_eval_prompt() -> None:
    sentences = all_pair_sentences()
    assert leaked_prompts(sentences, _training_captions()) == []
    assert leaked_prompts(sentences, all_eval_prompts()) == []
    assert leaked_prompts(all_eval_prompts(), sentences) == []
    # multi-word training phrases (beyond two-word terms such as "hiatal hernia") are not reused either
    phrases = {normalise_text(_bare(p)) for ps in FINDING_PHRASES.values() for p in ps}
    phrases = {p for p in phrases if len(p.split()) > 2}
    assert not [p for p in phrases for s in sentences if f" {p} " in f" {normalise_text(s)} "]


def test_no_pair_sentence_occurs_in_the_iu_reports(data_root: Path) -> None:
    """The text adapter trains on IU report sentences: none of the pair sentences may be one of them."""
    import pandas as pd

    iu = data_root / "text" / "iu_reports.csv"
    if not iu.is_file():
        pytest.skip(f"{iu} not present")
    reports = list(pd.read_csv(iu, dtype=str, keep_default_na=False)["report"])
    assert leaked_prompts(all_pair_sentences(), reports) == []
