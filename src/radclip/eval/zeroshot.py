"""Zero-shot evaluation of an image-text model: *prompt transfer* and *zero-shot*, under two names.

For each condition, the positive prompts are embedded, L2-normalised, averaged and renormalised
(prompt ensembling, as open_clip's zero-shot classifier does); the same for the negative prompts
("no {}"). An image's score is ``cos(image, positive) - cos(image, negative)``, the logit of the
two-way softmax up to the temperature, which does not change the AUC.

:func:`evaluate_zeroshot` (``radclip eval zeroshot``) uses the frozen evaluation prompt set
(:mod:`radclip.eval.prompt_sets`), whose wording training never uses, and reports:

* ``prompt_transfer``: the 14 trained NIH labels with unseen wording, NIH rows of the split;
* ``zero_shot``: conditions no training label names (pediatric pneumonia on ``kermany``), and
  ``prompt_transfer_from_notes`` for COVID-19 when the model trained on the covid clinical notes
  (:mod:`radclip.eval.zeroshot_cohorts` defines the cohorts and decides the name);

each AUC with its image and patient counts, a bootstrap CI stratified by positive/negative patients,
``measurable`` (>= 3 positive and >= 3 negative patients), and a paired patient-bootstrap difference
against the supervised triage model on the same images. :func:`evaluate_training_prompts` keeps the
old measurement (training-worded prompts: supervised transfer, not zero-shot) for the cards made with it.
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


def evaluate_training_prompts(
    model: Any, manifest: str, images_root: str, split: str | None = "test", n_boot: int = 1000
) -> dict[str, Any]:
    """AUCs with the training-worded prompts (the pre-issue-20 "zero-shot"; supervised transfer, not zero-shot)."""
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
        "prompt_set": "training (models/prompts.py): these sentences are training captions",
        "split": split,
        "n_images": len(ds),
        "mean_auc": float(np.mean(measurable)) if measurable else None,
        "n_measurable_labels": len(measurable),
        "per_label": per,
        "prompt_sensitivity": prompt_sensitivity(encode, img, labels, names),
        "triage": triage_side_by_side(),
    }


DEFAULT_TRIAGE = "radclip-mobilenetv2-nih"


def eval_set_embeddings(
    encode: TextEncode,
    conditions: Sequence[str],
    template: str | None = None,
    negative_template: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(positive (K, D), negative (K, D)) ensembled embeddings of the frozen evaluation prompt set."""
    from radclip.eval.prompt_sets import eval_negative_prompts, eval_positive_prompts

    pos = [_normalise(encode(eval_positive_prompts(c, template)).mean(0)) for c in conditions]
    neg = [_normalise(encode(eval_negative_prompts(c, negative_template)).mean(0)) for c in conditions]
    return np.stack(pos), np.stack(neg)


def prompt_transfer(
    encode: TextEncode,
    img: np.ndarray,
    labels: np.ndarray,
    patients: np.ndarray,
    triage: np.ndarray | None,
    n_boot: int,
) -> dict[str, Any]:
    """The 14 NIH labels scored with unseen wording: per-label AUC rows, mean, sensitivity, paired vs triage."""
    from radclip.eval.patient_bootstrap import auc_entry, paired_mean_diff, paired_patient_bootstrap_diff

    names = list(NIH_LABELS)
    scores = zeroshot_scores(img, *eval_set_embeddings(encode, names))
    per: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(names):
        per[name] = auc_entry(labels[:, k], scores[:, k], patients, n_boot, seed=k)
        if triage is not None:
            per[name]["vs_triage"] = paired_patient_bootstrap_diff(
                labels[:, k], scores[:, k], triage[:, k], patients, n_boot, seed=k
            )
    cols = [k for k, n in enumerate(names) if per[n]["measurable"]]
    out: dict[str, Any] = {
        "labels": "14 NIH labels (trained), evaluation prompt set wording (never in training captions)",
        "n_images": len(labels),
        "n_patients": len(set(patients)),
        "mean_auc": float(np.mean([per[names[k]]["auc"] for k in cols])) if cols else None,
        "measurable_labels": [names[k] for k in cols],
        "per_label": per,
        "prompt_sensitivity": _eval_template_sensitivity(encode, img, labels, names, cols),
    }
    if triage is not None:
        out["triage_mean_auc"] = (
            float(np.mean([per[names[k]]["vs_triage"]["auc_b"] for k in cols])) if cols else None
        )
        out["mean_diff_vs_triage"] = paired_mean_diff(labels, scores, triage, patients, cols, n_boot)
    return out


def _eval_template_sensitivity(
    encode: TextEncode, img: np.ndarray, labels: np.ndarray, names: list[str], cols: list[int]
) -> dict[str, Any]:
    """Mean AUC (measurable labels) with each single evaluation template pair instead of the ensemble."""
    from radclip.eval.patient_bootstrap import weighted_auc
    from radclip.eval.prompt_sets import EVAL_NEGATIVE_TEMPLATES, EVAL_TEMPLATES

    per_template: dict[str, float | None] = {}
    for tpl, neg_tpl in zip(EVAL_TEMPLATES, EVAL_NEGATIVE_TEMPLATES, strict=True):
        s = zeroshot_scores(img, *eval_set_embeddings(encode, names, tpl, neg_tpl))
        aucs = []
        for k in cols:
            known = ~np.isnan(labels[:, k])
            aucs.append(weighted_auc(labels[known, k], s[known, k], np.ones((1, int(known.sum()))))[0])
        per_template[tpl] = float(np.mean(aucs)) if aucs else None
    values = [v for v in per_template.values() if v is not None]
    return {
        "mean_auc_per_template": per_template,
        "spread": float(max(values) - min(values)) if values else None,
    }


def beyond_nih(
    encode: TextEncode,
    img: np.ndarray,
    frame: Any,
    triage: tuple[np.ndarray, list[str]] | None,
    n_boot: int,
    training_text: str,
) -> dict[str, dict[str, Any]]:
    """Pediatric pneumonia and COVID-19 tasks, keyed by kind (``zero_shot`` / ``prompt_transfer_from_notes``)."""
    from radclip.eval.patient_bootstrap import auc_entry, paired_patient_bootstrap_diff
    from radclip.eval.zeroshot_cohorts import covid_tasks, label_kind, pediatric_pneumonia_task, task_meta

    tasks = [t for t in (pediatric_pneumonia_task(frame), *covid_tasks(frame)) if t is not None]
    patients = frame["patient_id"].to_numpy()
    out: dict[str, dict[str, Any]] = {}
    for i, task in enumerate(tasks):
        pos, neg = eval_set_embeddings(encode, [task.condition])
        score = zeroshot_scores(img[task.rows], pos, neg)[:, 0]
        pid = patients[task.rows]
        kind = label_kind(task, training_text)
        entry = {**task_meta(task, kind), **auc_entry(task.y, score, pid, n_boot, seed=100 + i)}
        if triage is not None and task.triage_label in triage[1]:
            sup = triage[0][task.rows, triage[1].index(task.triage_label)]
            entry["vs_triage"] = {
                "triage_label": task.triage_label,
                **paired_patient_bootstrap_diff(task.y, score, sup, pid, n_boot, seed=100 + i),
            }
        out.setdefault(kind, {})[task.name] = entry
    return out


def evaluate_zeroshot(
    model: Any,
    manifest: str,
    images_root: str,
    split: str | None = "test",
    n_boot: int = 1000,
    training_text: str = "",
    triage_model: str | None = DEFAULT_TRIAGE,
) -> dict[str, Any]:
    """Prompt transfer (NIH) and zero-shot (beyond NIH) of ``model`` on ``split``, with the frozen prompt set.

    ``training_text``: the model card's ``source`` and ``training_data`` (decides whether COVID-19 is
    zero-shot). ``triage_model``: the supervised model compared on the same images (None: no comparison).
    """
    from radclip.eval.prompt_sets import EVAL_PROMPT_SET_NAME, all_eval_prompts, prompt_set_digest
    from radclip.eval.retrieval import embed_images, embed_texts
    from radclip.eval.zeroshot_cohorts import evaluation_frame, triage_logits
    from radclip.io.datasets import ManifestDataset
    from radclip.io.manifest import labels_matrix, read_manifest

    frame = evaluation_frame(read_manifest(manifest), split)
    ds = ManifestDataset(frame, images_root, size=model.preprocessing.input_size)
    img = embed_images(model, np.stack([ds.image(i) for i in range(len(ds))]))
    encode = cached_encoder(lambda texts: embed_texts(model, texts))
    encode(all_eval_prompts())  # one batched pass
    triage = triage_logits(frame, images_root, triage_model) if triage_model else None
    nih = np.flatnonzero((frame["source"] == "nih").to_numpy())
    nih_triage = None
    if triage is not None and triage[1] == list(NIH_LABELS):
        nih_triage = triage[0][nih]
    labels = labels_matrix(frame.iloc[nih])
    report: dict[str, Any] = {
        "prompt_set": {"name": EVAL_PROMPT_SET_NAME, "sha256": prompt_set_digest()},
        "split": split,
        "triage_model": triage_model if triage is not None else None,
        "prompt_transfer": prompt_transfer(
            encode, img[nih], labels, frame["patient_id"].to_numpy()[nih], nih_triage, n_boot
        ),
        "methods": {
            "ci": f"95% percentile CI, {n_boot} resamples, positive and negative patients resampled separately",
            "measurable": "an AUC is measurable with >= 3 positive and >= 3 negative patients; means use measurable labels only",
            "vs_triage": "AUC(image-text) - AUC(triage) on the same images, same patient resamples for both",
        },
    }
    report.update(beyond_nih(encode, img, frame, triage, n_boot, training_text))
    return report
