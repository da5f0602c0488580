"""Retrieval metrics on hand-made embeddings with known answers; chunked == full."""

from __future__ import annotations

import numpy as np
import pytest

from radclip.eval.retrieval import (
    dedupe_texts,
    label_precision_at_k,
    matched_cosine,
    recall_at_k,
    retrieval_report,
)


def _unit(rows: list[list[float]]) -> np.ndarray:
    x = np.asarray(rows, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_dedupe_counts_shared_notes_once() -> None:
    texts, rows = dedupe_texts(["a", "b", "a", "c"])
    assert texts == ["a", "b", "c"] and rows == [0, 1, 0, 2]


def test_recall_known_answers() -> None:
    # 3 texts on the axes; images 0,1 -> text 0 (a shared note), image 2 -> text 1, image 3 -> text 2.
    txt = _unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    img = _unit([[1, 0.1, 0], [0, 1, 0.2], [0.3, 1, 0], [0.9, 0, 0.5]])
    rows = [0, 0, 1, 2]
    r = recall_at_k(img, txt, rows, ks=(1, 2))
    # i2t top-1: img0 -> t0 (hit), img1 -> t1 (miss), img2 -> t1 (hit), img3 -> t0 (miss)
    assert r["i2t_R@1"] == pytest.approx(0.5)
    # top-2: img1 -> [t1, t2] miss; img3 -> [t0, t2] hit
    assert r["i2t_R@2"] == pytest.approx(0.75)
    # t2i top-1: t0 -> img0 (carries t0: hit); t1 -> img1 (carries t0: miss); t2 -> img3 (hit)
    assert r["t2i_R@1"] == pytest.approx(2 / 3)
    # t2i top-2: t1 -> [img1, img2]: img2 carries t1 -> hit
    assert r["t2i_R@2"] == pytest.approx(1.0)


def test_matched_cosine_and_label_precision() -> None:
    txt = _unit([[1, 0], [0, 1]])
    img = _unit([[1, 0], [1, 1]])
    assert matched_cosine(img, txt, [0, 1]) == pytest.approx((1 + 2**-0.5) / 2)
    img_lab = np.array([[1, 0], [np.nan, 1]], np.float32)
    txt_lab = np.array([[1, 0], [0, 0]], np.float32)  # text 1 has no positive finding
    p = label_precision_at_k(img, txt, img_lab, txt_lab, ks=(1, 2))
    # i2t: img0 top1 t0 (shares label 0: 1), img1 top1 is t0 or t1 tie -> stable order picks t0 (no share)
    assert p["i2t_P@1"] == pytest.approx(0.5)
    assert p["i2t_P@2"] == pytest.approx(0.25)
    # t2i: only t0 has a positive; its top1 image is img0 (shares): 1.0; top2 adds img1 (no): 0.5
    assert p["t2i_P@1"] == pytest.approx(1.0) and p["t2i_P@2"] == pytest.approx(0.5)


def test_chunked_equals_full() -> None:
    rng = np.random.default_rng(0)
    img = _unit(rng.normal(size=(37, 8)).tolist())
    txt = _unit(rng.normal(size=(23, 8)).tolist())
    rows = rng.integers(0, 23, size=37).tolist()
    lab_i = (rng.random((37, 5)) > 0.6).astype(np.float32)
    lab_t = (rng.random((23, 5)) > 0.6).astype(np.float32)
    full = retrieval_report(img, txt, rows, lab_i, lab_t)
    for chunk in (1, 5, 16):
        assert retrieval_report(img, txt, rows, lab_i, lab_t, chunk=chunk) == full
    assert 0.0 <= full["i2t_R@1"] <= full["i2t_R@5"] <= full["i2t_R@10"] <= 1.0
