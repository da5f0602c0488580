"""Zero-shot classification of the NIH findings with an image-text model.

For each finding, the positive prompts (every template in :mod:`radclip.models.prompts` with the
finding's phrase) are embedded, L2-normalised, averaged and renormalised (prompt ensembling,
as open_clip's zero-shot classifier does); the same for the negative prompts ("no {}").
An image's score for the finding is ``cos(image, positive) - cos(image, negative)``, i.e. the
logit of the two-way softmax up to the temperature, which does not change the AUC.

Reported: per-finding AUC (with a patient-level bootstrap CI when :mod:`radclip.eval.metrics`
provides ``auc_with_ci``), the mean over findings with >= 3 positives and >= 3 negatives,
prompt sensitivity (the mean AUC with each single template, and their spread), and the
supervised triage model's per-finding AUCs from its card, side by side, when that card exists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from radclip.io.labels import NIH_LABELS

MIN_POS = 3
MIN_NEG = 3
TextEncode = Callable[[list[str]], np.ndarray]  # texts -> (N, D) normalised embeddings


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def class_embeddings(
    encode: TextEncode,
    labels: Sequence[str],
    template: str | None = None,
    negative_template: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(positive (K, D), negative (K, D)) ensembled prompt embeddings, one row per label."""
    from radclip.models.prompts import negative_prompts, positive_prompts

    pos = [_normalise(encode(positive_prompts(lab, template)).mean(0)) for lab in labels]
    neg = [_normalise(encode(negative_prompts(lab, negative_template)).mean(0)) for lab in labels]
    return np.stack(pos), np.stack(neg)


def zeroshot_scores(img: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """(N, K) scores ``cos(img, pos_k) - cos(img, neg_k)``."""
    return img @ pos.T - img @ neg.T


def _auc(y: np.ndarray, s: np.ndarray) -> tuple[float | None, int, int]:
    from sklearn.metrics import roc_auc_score

    known = ~np.isnan(y)
    y, s = y[known], s[known]
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return None, n_pos, n_neg
    return float(roc_auc_score(y, s)), n_pos, n_neg


def mean_measurable_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Mean AUC over columns with >= MIN_POS positives and >= MIN_NEG negatives."""
    values = []
    for k in range(labels.shape[1]):
        auc, n_pos, n_neg = _auc(labels[:, k], scores[:, k])
        if auc is not None and n_pos >= MIN_POS and n_neg >= MIN_NEG:
            values.append(auc)
    return float(np.mean(values)) if values else None


def per_label_auc(
    labels: np.ndarray, scores: np.ndarray, names: Sequence[str], groups: np.ndarray | None, n_boot: int
) -> dict[str, dict[str, Any]]:
    try:
        from radclip.eval.metrics import auc_with_ci
    except ImportError:  # metrics module not installed: point estimates only
        auc_with_ci = None
    out = {}
    for k, name in enumerate(names):
        if auc_with_ci is not None and n_boot > 0:
            res = auc_with_ci(labels[:, k], scores[:, k], groups, n_boot=n_boot, seed=k).to_dict()
        else:
            auc, n_pos, n_neg = _auc(labels[:, k], scores[:, k])
            res = {"auc": auc, "n_pos": n_pos, "n_neg": n_neg}
        res["measurable"] = res.get("n_pos", 0) >= MIN_POS and res.get("n_neg", 0) >= MIN_NEG
        out[name] = res
    return out


def prompt_sensitivity(
    encode: TextEncode, img: np.ndarray, labels: np.ndarray, names: Sequence[str]
) -> dict[str, Any]:
    """Mean AUC with each single (positive, negative) template pair instead of the ensemble."""
    from radclip.models.prompts import NEGATIVE_TEMPLATES, TEMPLATES

    per_template = {}
    for tpl, neg_tpl in zip(TEMPLATES, NEGATIVE_TEMPLATES, strict=True):
        pos, neg = class_embeddings(encode, names, tpl, neg_tpl)
        per_template[tpl] = mean_measurable_auc(labels, zeroshot_scores(img, pos, neg))
    values = [v for v in per_template.values() if v is not None]
    spread = float(max(values) - min(values)) if values else None
    return {
        "mean_auc_per_template": per_template,
        "spread": spread,
        "std": float(np.std(values)) if values else None,
    }


def triage_side_by_side(name_or_path: str | None = None) -> dict[str, Any] | None:
    """Per-finding AUCs of the supervised triage model from its card's ``metrics``, if a card exists."""
    from radclip.models.registry import find_card
    from radclip.models.weights import WeightsError

    try:
        card, _ = find_card(name_or_path or "radclip-mobilenetv2-nih")
    except WeightsError:
        return None
    found: dict[str, Any] = {}

    def walk(obj: Any, path: str) -> None:
        if isinstance(obj, dict):
            for key, val in obj.items():
                if key in NIH_LABELS and key not in found:
                    auc = val.get("auc") if isinstance(val, dict) else val
                    if isinstance(auc, int | float):
                        found[key] = float(auc)
                else:
                    walk(val, f"{path}.{key}")

    walk(card.metrics, "metrics")
    return {"model": card.name, "per_label_auc": found, "metrics_keys": sorted(card.metrics)}


def cached_encoder(encode: TextEncode) -> TextEncode:
    """Memoise ``encode`` per text: single-template prompts are a subset of the ensemble's."""
    cache: dict[str, np.ndarray] = {}

    def wrapped(texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in cache]
        if todo:
            cache.update(zip(todo, encode(todo), strict=True))
        return np.stack([cache[t] for t in texts])

    return wrapped


def evaluate_zeroshot(
    model: Any, manifest: str, images_root: str, split: str | None = "test", n_boot: int = 1000
) -> dict[str, Any]:
    """Zero-shot AUCs of ``model`` on the manifest's NIH rows of ``split``."""
    from radclip.eval.retrieval import embed_images, embed_texts
    from radclip.io.datasets import ManifestDataset
    from radclip.models.prompts import negative_prompts, positive_prompts

    ds = ManifestDataset(
        manifest, images_root, split=split, sources=["nih"], size=model.preprocessing.input_size
    )
    labels = ds.labels_matrix()
    img = embed_images(model, np.stack([ds.image(i) for i in range(len(ds))]))

    encode = cached_encoder(lambda texts: embed_texts(model, texts))
    encode(
        [p for lab in NIH_LABELS for p in (*positive_prompts(lab), *negative_prompts(lab))]
    )  # one batched pass

    names = list(NIH_LABELS)
    pos, neg = class_embeddings(encode, names)
    scores = zeroshot_scores(img, pos, neg)
    per = per_label_auc(labels, scores, names, ds.frame["patient_id"].to_numpy(), n_boot)
    measurable = [v["auc"] for v in per.values() if v["measurable"] and v["auc"] is not None]
    return {
        "split": split,
        "n_images": len(ds),
        "mean_auc": float(np.mean(measurable)) if measurable else None,
        "n_measurable_labels": len(measurable),
        "per_label": per,
        "prompt_sensitivity": prompt_sensitivity(encode, img, labels, names),
        "triage": triage_side_by_side(),
    }
