"""Embedding maps (t-SNE) and how strongly embeddings cluster by source dataset vs by pathology.

Measures (also in ``docs/evaluation.md``), on L2-normalised embeddings with cosine distance:

* ``silhouette_source``: silhouette score with the source dataset as cluster label (all rows).
* ``silhouette_pathology``: silhouette with the pathology category as label, on NIH rows only
  (the only rows with findings; mixing sources would count source separation as pathology).
* ``knn_source_purity``: mean fraction of each image's 10 nearest neighbours from its own
  source; ``chance_source_purity`` = sum of squared source shares (what random neighbours give).
* ``source_dominates`` (the flag): silhouette by source > 0 and > silhouette by pathology AND
  kNN source purity exceeds chance by >= 0.15. That means a model that could tell the
  hospital/scanner more easily than the finding -- a shortcut risk (the product notes saw
  it with classifier features).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from radclip.io.labels import NIH_LABELS

PURITY_MARGIN = 0.15  # kNN source purity above chance by at least this (with the silhouette test) = flag
KNN = 10


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pathology_category(frame: Any, labels: np.ndarray, top: Sequence[str]) -> np.ndarray:
    """One colour class per image: NIH "No finding", one of ``top`` findings, "other finding"; others by source note."""
    cats = []
    for i in range(len(frame)):
        row = labels[i]
        if np.all(np.isnan(row)):
            finding = str(frame["finding"].iloc[i]) if "finding" in frame.columns else ""
            cats.append("non-NIH: COVID-19" if "covid" in finding.lower() else "non-NIH: other/unknown")
            continue
        pos = [NIH_LABELS[k] for k in range(len(row)) if row[k] == 1]
        if not pos:
            cats.append("NIH: no finding")
        else:
            first = next((p for p in top if p in pos), None)
            cats.append(f"NIH: {first}" if first else "NIH: other finding")
    return np.array(cats, dtype=object)


def tsne_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 2) t-SNE of ``x`` (PCA to 50 dims first when wider; perplexity capped for small N; exact gradients up to 1000 points, faster there)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = _normalise(x)
    if x.shape[1] > 50 and x.shape[0] > 50:
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", max_iter=600, method="exact" if len(x) <= 1000 else "barnes_hut", random_state=seed).fit_transform(x)


def _silhouette(x: np.ndarray, groups: np.ndarray) -> float | None:
    from sklearn.metrics import silhouette_score

    values, counts = np.unique(groups.astype(str), return_counts=True)
    keep = np.isin(groups.astype(str), values[counts >= 2])
    if len(values[counts >= 2]) < 2 or keep.sum() <= len(values[counts >= 2]):
        return None
    return float(silhouette_score(x[keep], groups[keep].astype(str), metric="cosine"))


def knn_purity(x: np.ndarray, groups: np.ndarray, k: int = KNN) -> float | None:
    """Mean fraction of each row's k nearest neighbours (cosine, self excluded) sharing its group."""
    n = len(x)
    if n < 3:
        return None
    k = min(k, n - 1)
    xn = _normalise(x)
    sim = xn @ xn.T
    np.fill_diagonal(sim, -np.inf)
    nn = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    g = groups.astype(str)
    return float((g[nn] == g[:, None]).mean())


def clustering_stats(x: np.ndarray, source: np.ndarray, category: np.ndarray, nih_rows: np.ndarray) -> dict[str, Any]:
    """Silhouettes, kNN purities and the ``source_dominates`` flag (see the module doc)."""
    xn = _normalise(x)
    _, counts = np.unique(source.astype(str), return_counts=True)
    chance = float(((counts / counts.sum()) ** 2).sum())
    out: dict[str, Any] = {
        "n": int(len(x)),
        "silhouette_source": _silhouette(xn, source),
        "silhouette_pathology": _silhouette(xn[nih_rows], category[nih_rows]) if len(nih_rows) else None,
        "knn_source_purity": knn_purity(xn, source),
        "chance_source_purity": chance,
        "knn_pathology_purity_nih": knn_purity(xn[nih_rows], category[nih_rows]) if len(nih_rows) > 2 else None,
    }
    s_src, s_path, pur = out["silhouette_source"], out["silhouette_pathology"], out["knn_source_purity"]
    out["source_dominates"] = bool(
        s_src is not None and pur is not None and s_src > 0 and (s_path is None or s_src > s_path) and pur - chance >= PURITY_MARGIN
    )
    return out
