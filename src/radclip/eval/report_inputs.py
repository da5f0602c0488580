"""Run both shipped models once over a manifest split and keep everything the report needs.

One pass per model: the triage network gives logits and its last feature map (pooled -> the
penultimate features for the embedding map; the map itself -> CAMs for the failure gallery);
the image-text model gives normalised image embeddings. Text embeddings are memoised, so
prompt sensitivity and the zero-shot ensemble never encode one prompt twice. Every section of
:mod:`radclip.eval.report` and :mod:`radclip.eval.gate` reads from this one object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from radclip.io.labels import NIH_LABELS

if TYPE_CHECKING:
    import pandas as pd

    from radclip.eval.calibration import LabelCalibration


@dataclass
class RunConfig:
    """What to evaluate and how (shared by ``radclip report`` and ``radclip validate``)."""

    manifest: Path  # manifest CSV
    images_root: Path  # folder the manifest's ``path`` column is relative to
    split: str | None = "test"  # manifest split; None = every row
    triage_model: str | None = None  # shipped name or path; None = settings.triage_model
    clip_model: str | None = None  # shipped name or path; None = settings.clip_model
    n_boot: int = 300  # bootstrap resamples (patient-level) for every CI
    seed: int = 0  # bootstrap seed
    batch_size: int = 32  # images per forward pass


@dataclass
class EvalInputs:
    """Row-aligned model outputs over the split (row i = ``frame`` row i)."""

    frame: pd.DataFrame  # the split's manifest rows, all sources
    labels: np.ndarray  # (N, 14) NIH labels, NaN = unknown (non-NIH rows)
    triage_logits: np.ndarray  # (N, 14)
    triage_probs: np.ndarray  # (N, 14) sigmoid(logit / T + b) with the card's calibration (plain sigmoid without)
    triage_calibration: LabelCalibration | None  # from the card, None when it has none
    triage_features: np.ndarray  # (N, C) pooled penultimate features
    triage_maps: list[np.ndarray]  # per image (C, h, w) last conv map (CAM input)
    classifier: tuple[np.ndarray, np.ndarray]  # triage head (weight (14, C), bias (14,))
    triage_images: Any  # ManifestDataset at the triage input size (thumbnails, CAM backgrounds)
    clip_images: np.ndarray  # (N, D) normalised image embeddings
    zs_scores: np.ndarray  # (N, 14) prompt-transfer scores (ensembled evaluation prompt set, unseen in training)
    clip_model: Any  # the image-text model (text encoding on demand)
    triage_card: Any  # ModelCard
    clip_card: Any  # ModelCard
    names: tuple[str, ...] = NIH_LABELS  # label order of every (N, 14) array
    _text_cache: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def patients(self) -> np.ndarray:
        return self.frame["patient_id"].to_numpy()

    @property
    def nih_rows(self) -> np.ndarray:
        """Indices of rows with at least one known NIH label (the only rows with ground truth)."""
        return np.flatnonzero(~np.all(np.isnan(self.labels), axis=1))

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """Normalised text embeddings (N, D), memoised per text."""
        from radclip.eval.retrieval import embed_texts

        todo = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if todo:
            for t, v in zip(todo, embed_texts(self.clip_model, todo), strict=True):
                self._text_cache[t] = v
        return np.stack([self._text_cache[t] for t in texts])


def _load(name: str | None, task: str) -> tuple[Any, Any]:
    from radclip.models.registry import load_pretrained
    from radclip.settings import get_settings

    if not name:
        name = get_settings().triage_model if task == "triage" else get_settings().clip_model
    model, card = load_pretrained(name)
    if card.task != task:
        raise ValueError(f"model {name!r} is a {card.task!r} model; pass a {task!r} model (--{'triage' if task == 'triage' else 'clip'}-model)")
    return model, card


def _calibration(card: Any) -> LabelCalibration | None:
    from radclip.eval.calibration import calibration_from_card

    try:
        return calibration_from_card(card)
    except ValueError:  # incomplete calibration block: report uncalibrated probabilities
        return None


def collect_inputs(cfg: RunConfig) -> EvalInputs:
    """Load both models, run them over the split once, and return the aligned outputs."""
    from radclip.eval.calibration import calibrated_probs
    from radclip.eval.retrieval import embed_images
    from radclip.eval.triage_eval import collect_logits
    from radclip.eval.zeroshot import eval_set_embeddings, zeroshot_scores
    from radclip.io.datasets import ManifestDataset

    triage, tcard = _load(cfg.triage_model, "triage")
    clip, ccard = _load(cfg.clip_model, "clip")
    ds = ManifestDataset(cfg.manifest, cfg.images_root, split=cfg.split, size=tcard.preprocessing.input_size, cache=False)
    preds = collect_logits(triage, ds, tcard.preprocessing, batch_size=cfg.batch_size, keep_features=True)
    maps = preds.features or []
    calibration = _calibration(tcard)
    clip_size = clip.preprocessing.input_size
    if clip_size == ds.size:
        clip_arrays = np.stack([ds.image(i) for i in range(len(ds))])
    else:
        cds = ManifestDataset(ds.frame, cfg.images_root, size=clip_size)
        clip_arrays = np.stack([cds.image(i) for i in range(len(cds))])
    img = embed_images(clip, clip_arrays, batch=cfg.batch_size)
    weight = triage.classifier.weight.detach().float().cpu().numpy()
    bias = triage.classifier.bias.detach().float().cpu().numpy()
    inputs = EvalInputs(
        frame=ds.frame, labels=ds.labels_matrix(), triage_logits=preds.logits, triage_probs=calibrated_probs(preds.logits, calibration),
        triage_calibration=calibration, triage_features=np.stack([m.mean(axis=(1, 2)) for m in maps]), triage_maps=maps,
        classifier=(weight, bias), triage_images=ds, clip_images=img, zs_scores=np.zeros_like(preds.logits), clip_model=clip,
        triage_card=tcard, clip_card=ccard,
    )
    # Prompt transfer: the frozen evaluation prompt set, whose wording training never saw (issue 20).
    pos, neg = eval_set_embeddings(inputs.encode_text, list(NIH_LABELS))
    inputs.zs_scores = zeroshot_scores(img, pos, neg)
    return inputs


def model_summary(inputs: EvalInputs) -> dict[str, Any]:
    """Names, versions and weight hashes of the two models (stored in the JSON twin)."""
    out = {}
    for key, card in (("triage", inputs.triage_card), ("clip", inputs.clip_card)):
        out[key] = {"name": card.name, "version": card.version, "architecture": card.architecture, "weights_sha256": card.weights_sha256}
    return out
