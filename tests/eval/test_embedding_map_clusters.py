"""Embedding-map statistics on synthetic clusters: source-driven vs pathology-driven embeddings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radclip.eval.embedding_map import clustering_stats, knn_purity, pathology_category, tsne_2d


def _data(by: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 120
    source = np.array(["nih"] * 60 + ["covid"] * 60, dtype=object)
    category = np.array((["NIH: no finding", "NIH: Effusion"] * 30) + ["non-NIH: COVID-19"] * 60, dtype=object)
    centres = {g: rng.normal(size=16) * 4 for g in set(source) | set(category)}
    key = source if by == "source" else category
    x = np.stack([centres[k] for k in key]) + rng.normal(size=(n, 16))
    return x, source, category, np.arange(60)


def test_source_clusters_are_flagged() -> None:
    x, source, category, nih = _data("source")
    st = clustering_stats(x, source, category, nih)
    assert st["knn_source_purity"] == pytest.approx(1.0)
    assert st["chance_source_purity"] == pytest.approx(0.5)
    assert st["silhouette_source"] > 0.3 > (st["silhouette_pathology"] or 0)
    assert st["source_dominates"] is True


def test_pathology_clusters_are_not_flagged() -> None:
    x, source, category, nih = _data("pathology")
    st = clustering_stats(x, source, category, nih)
    assert st["silhouette_pathology"] > st["silhouette_source"]
    assert st["knn_pathology_purity_nih"] > 0.9
    assert st["source_dominates"] is False


def test_knn_purity_by_hand() -> None:
    x = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99]])
    assert knn_purity(x, np.array(["a", "a", "b", "b"]), k=1) == pytest.approx(1.0)
    assert knn_purity(x, np.array(["a", "b", "a", "b"]), k=1) == pytest.approx(0.0)


def test_pathology_category_and_tsne_shape() -> None:
    frame = pd.DataFrame({"finding": ["", "", "COVID-19", "SARS"]})
    labels = np.full((4, 14), np.nan)
    labels[0] = 0
    labels[1] = 0
    labels[1, 2] = 1  # Effusion
    cats = pathology_category(frame, labels, ["Effusion"])
    assert list(cats) == ["NIH: no finding", "NIH: Effusion", "non-NIH: COVID-19", "non-NIH: other/unknown"]
    xy = tsne_2d(np.random.default_rng(0).normal(size=(20, 8)))
    assert xy.shape == (20, 2) and np.isfinite(xy).all()
