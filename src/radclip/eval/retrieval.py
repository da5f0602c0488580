"""Image <-> report retrieval metrics, and the evaluation of a model on a manifest's report rows.

Counting (several images of one patient often share one note):

* The **text gallery** holds each distinct report once. Every image's query has exactly one
  correct text: the gallery entry identical to its report.
* **Image -> text R@K**: fraction of images whose correct text is among the top K gallery texts.
* **Text -> image R@K**: one query per distinct text; a hit when any of the top K images carries
  that text (so a note shared by three images counts once, and any of its images is a hit).
* **Label-consistent precision@K**: the fraction of the top K results that share at least one
  positive finding with the query (labels from the report labeller), averaged over queries
  with at least one positive finding; both directions.
* **Matched cosine**: mean cosine between each image and its own report.

Scores are computed in query chunks (``chunk``) so a large gallery never needs the full
similarity matrix at once; chunked and full computation agree exactly (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

KS = (1, 5, 10)


def _topk(queries: np.ndarray, gallery: np.ndarray, k: int, chunk: int | None) -> np.ndarray:
    """Indices (Q, k) of the k most similar gallery rows per query, best first (stable ties)."""
    k = min(k, len(gallery))
    step = chunk or len(queries) or 1
    out = []
    for s in range(0, len(queries), step):
        sim = queries[s : s + step] @ gallery.T
        out.append(np.argsort(-sim, axis=1, kind="stable")[:, :k])
    return np.concatenate(out) if out else np.zeros((0, k), np.int64)


def recall_at_k(
    img: np.ndarray,
    txt: np.ndarray,
    img_to_txt: Sequence[int],
    ks: Sequence[int] = KS,
    chunk: int | None = None,
) -> dict[str, float]:
    """R@K both ways. ``txt`` holds distinct texts; ``img_to_txt[i]`` is image i's text row."""
    target = np.asarray(img_to_txt)
    kmax = max(ks)
    i2t = _topk(img, txt, kmax, chunk)
    t2i = _topk(txt, img, kmax, chunk)
    out: dict[str, float] = {}
    for k in ks:
        out[f"i2t_R@{k}"] = float(np.mean([target[i] in i2t[i, :k] for i in range(len(img))]))
        out[f"t2i_R@{k}"] = float(np.mean([np.any(target[t2i[t, :k]] == t) for t in range(len(txt))]))
    return out


def label_precision_at_k(
    img: np.ndarray,
    txt: np.ndarray,
    img_labels: np.ndarray,
    txt_labels: np.ndarray,
    ks: Sequence[int] = KS,
    chunk: int | None = None,
) -> dict[str, float | None]:
    """Precision@K of results sharing >= 1 positive finding with the query (labels: 1 = positive)."""
    img_pos = np.nan_to_num(img_labels) == 1
    txt_pos = np.nan_to_num(txt_labels) == 1
    kmax = max(ks)
    out: dict[str, float | None] = {}
    for name, q, g, qpos, gpos in (("i2t", img, txt, img_pos, txt_pos), ("t2i", txt, img, txt_pos, img_pos)):
        top = _topk(q, g, kmax, chunk)
        has = qpos.any(axis=1)
        for k in ks:
            if not has.any():
                out[f"{name}_P@{k}"] = None
                continue
            shared = (qpos[has][:, None, :] & gpos[top[has, :k]]).any(axis=2)
            out[f"{name}_P@{k}"] = float(shared.mean())
    return out


def matched_cosine(img: np.ndarray, txt: np.ndarray, img_to_txt: Sequence[int]) -> float:
    """Mean cosine between each (normalised) image embedding and its own text embedding."""
    return float(np.mean(np.sum(img * txt[np.asarray(img_to_txt)], axis=1)))


def dedupe_texts(reports: Sequence[str]) -> tuple[list[str], list[int]]:
    """Distinct texts (first-seen order) and each report's row among them."""
    index: dict[str, int] = {}
    rows = [index.setdefault(r, len(index)) for r in reports]
    return list(index), rows


def retrieval_report(
    img: np.ndarray,
    txt: np.ndarray,
    img_to_txt: Sequence[int],
    img_labels: np.ndarray | None = None,
    txt_labels: np.ndarray | None = None,
    chunk: int | None = None,
) -> dict[str, Any]:
    """All retrieval numbers for normalised embeddings, as one JSON-able dict."""
    out: dict[str, Any] = {"n_images": int(len(img)), "n_texts": int(len(txt))}
    out.update(recall_at_k(img, txt, img_to_txt, chunk=chunk))
    out["matched_cosine"] = matched_cosine(img, txt, img_to_txt)
    if img_labels is not None and txt_labels is not None:
        out.update(label_precision_at_k(img, txt, img_labels, txt_labels, chunk=chunk))
    return out


def embed_texts(model: Any, texts: Sequence[str], batch: int = 64) -> np.ndarray:
    import torch

    outs = []
    with torch.inference_mode():
        for s in range(0, len(texts), batch):
            outs.append(model.encode_text(list(texts[s : s + batch]), normalize=True).float().cpu().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, model.embed_dim), np.float32)


def embed_images(model: Any, images: np.ndarray, batch: int = 32) -> np.ndarray:
    import torch

    outs = []
    with torch.inference_mode():
        for s in range(0, len(images), batch):
            outs.append(
                model.encode_image(torch.from_numpy(images[s : s + batch]), normalize=True)
                .float()
                .cpu()
                .numpy()
            )
    return np.concatenate(outs) if outs else np.zeros((0, model.embed_dim), np.float32)


def evaluate_retrieval(
    model: Any, manifest: str, images_root: str, split: str | None = None, size: int | None = None
) -> dict[str, Any]:
    """Embed the manifest's rows that have a report and compute :func:`retrieval_report`."""
    from radclip.io.datasets import PairDataset
    from radclip.io.labeller import label_reports

    size = size or model.preprocessing.input_size
    ds = PairDataset(manifest, images_root, split=split, size=size)
    reports = [str(r) for r in ds.frame["report"]]
    texts, rows = dedupe_texts(reports)
    images = np.stack([ds.image(i) for i in range(len(ds))])
    img = embed_images(model, images)
    txt = embed_texts(model, texts)
    txt_labels = label_reports(texts)[:, :14]
    out = retrieval_report(img, txt, rows, txt_labels[np.asarray(rows)], txt_labels)
    out.update(
        {
            "split": split,
            "sources": sorted(ds.frame["source"].unique().tolist()),
            "counting": "distinct texts; t2i hit if any top-K image carries the query text",
        }
    )
    return out
