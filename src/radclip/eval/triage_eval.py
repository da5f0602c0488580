"""Evaluate a triage model on a manifest: per-label AUC (+CI by patient), mean AUC, ECE, Brier, localisation.

``collect_logits`` runs the model over a dataset once; ``evaluate_predictions`` turns logits and
labels into the report dict; ``evaluate_triage`` does both for a manifest. Rows whose 14 labels are
all unknown (non-NIH sources) are dropped before the AUC (they carry no ground truth).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from radclip.eval.metrics import (
    brier_score,
    expected_calibration_error,
    mean_auc,
    per_label_auc,
    per_label_ece,
    prevalence_ece,
)

if TYPE_CHECKING:
    import torch

    from radclip.eval.calibration import LabelCalibration
    from radclip.models.card import ModelCard, Preprocessing


@dataclass
class Predictions:
    """Model outputs over a dataset, row-aligned with its manifest rows."""

    logits: np.ndarray  # (N, K) raw scores
    labels: np.ndarray  # (N, K) NaN = unknown
    image_ids: list[str] = field(default_factory=list)
    patient_ids: list[str] = field(default_factory=list)
    features: list[np.ndarray] | None = None  # per-image (C, h, w) maps when requested (for CAM)


def collect_logits(model: torch.nn.Module, dataset: Any, pre: Preprocessing, batch_size: int = 32, num_workers: int = 0, keep_features: bool = False) -> Predictions:
    """Run ``model.predict`` over ``dataset`` (items as :class:`~radclip.io.datasets.ManifestDataset`)."""
    from torch.utils.data import DataLoader

    from radclip.models.preprocess import to_model_input

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    device = next(model.parameters()).device
    logits, labels, ids, pids, feats = [], [], [], [], []
    for batch in loader:
        x = to_model_input(batch["image"], pre).to(device)
        out = model.predict(x)  # type: ignore[operator]
        logits.append(out.logits.float().cpu().numpy())
        labels.append(batch["labels"].numpy())
        ids += list(batch["image_id"])
        pids += list(batch["patient_id"])
        if keep_features:
            feats += list(out.features.float().cpu().numpy())
    return Predictions(np.concatenate(logits), np.concatenate(labels), ids, pids, feats if keep_features else None)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def evaluate_predictions(preds: Predictions, names: list[str], calibration: LabelCalibration | np.ndarray | None = None, n_boot: int = 1000, seed: int = 0,
                         prevalence: np.ndarray | None = None) -> dict[str, Any]:
    """The report: per-label AUC with patient-bootstrap CI, mean AUC over measurable labels, ECE/Brier.

    ECE is given pooled (for continuity) and per label with its mean; ``prevalence`` (K,) (the
    training split's label prevalence) adds the image-blind baseline's per-label ECE beside it.
    """
    known_any = ~np.all(np.isnan(preds.labels), axis=1)
    labels = preds.labels[known_any]
    logits = preds.logits[known_any]
    groups = np.asarray(preds.patient_ids)[known_any] if preds.patient_ids else None
    results = per_label_auc(labels, logits, names, groups=groups, n_boot=n_boot, seed=seed)
    probs = _sigmoid(logits)
    report: dict[str, Any] = {
        "n_images": int(len(preds.logits)),
        "n_images_with_labels": int(known_any.sum()),
        "n_patients": int(len(set(groups))) if groups is not None else None,
        "per_label": {k: v.to_dict() for k, v in results.items()},
        "mean_auc": mean_auc(results),
        "measurable_labels": [k for k, v in results.items() if v.measurable],
        "unmeasurable_labels": [k for k, v in results.items() if not v.measurable],
        "positives": {k: v.n_pos for k, v in results.items()},
        "ece": expected_calibration_error(labels, probs),
        "ece_per_label": per_label_ece(labels, probs, names),
        "brier": brier_score(labels, probs),
        "bootstrap": {"n_boot": n_boot, "seed": seed, "unit": "patient" if groups is not None else "image", "ci": 0.95},
    }
    if calibration is not None:
        from radclip.eval.calibration import calibrated_probs

        cal = calibrated_probs(logits, calibration)
        report["ece_calibrated"] = expected_calibration_error(labels, cal)
        report["ece_per_label_calibrated"] = per_label_ece(labels, cal, names)
        report["brier_calibrated"] = brier_score(labels, cal)
    if prevalence is not None:
        report["ece_per_label_prevalence_baseline"] = prevalence_ece(labels, prevalence, names)
        report["ece_prevalence_baseline_pooled"] = expected_calibration_error(labels, np.broadcast_to(prevalence[None, :], labels.shape))
    return report


def train_prevalence(frame: Any, names: list[str], sources: list[str] | None, split: str = "train") -> np.ndarray | None:
    """Per-label prevalence (K,) of known labels on a manifest split (the image-blind baseline); None without such rows."""
    rows = frame[frame["split"] == split] if "split" in frame.columns else frame
    if sources:
        rows = rows[rows["source"].isin(sources)]
    values = rows[list(names)].astype(float).to_numpy()
    known = (values == 0) | (values == 1)
    if not known.any(axis=0).all():
        return None
    return np.where(known, values, 0).sum(0) / known.sum(0)


def evaluate_triage(
    model: torch.nn.Module,
    card: ModelCard,
    manifest: str | Path,
    images_root: str | Path,
    split: str | None = "test",
    sources: list[str] | None = None,
    bboxes: str | Path | None = None,
    n_boot: int = 1000,
    batch_size: int = 32,
    reliability_png: str | Path | None = None,
) -> dict[str, Any]:
    """Load the manifest rows (all rows when the manifest has no split column) and evaluate."""
    from radclip.eval.calibration import calibration_from_card
    from radclip.io.datasets import ManifestDataset
    from radclip.io.manifest import read_manifest

    frame = read_manifest(manifest)
    has_split = "split" in frame.columns and (frame["split"] != "").any()
    ds = ManifestDataset(frame, images_root, split=split if has_split else None, sources=sources, size=card.preprocessing.input_size, cache=False)
    preds = collect_logits(model, ds, card.preprocessing, batch_size=batch_size, keep_features=bboxes is not None)
    from radclip.io.manifest import data_snapshot

    calibration = calibration_from_card(card)
    prevalence = train_prevalence(frame, list(card.labels), sources or ['nih']) if has_split else None
    report = evaluate_predictions(preds, list(card.labels), calibration=calibration, n_boot=n_boot, prevalence=prevalence)
    report.update({"model": card.name, "model_version": card.version, "weights_sha256": card.weights_sha256, "split": split if has_split else None, "sources": sources,
                   "manifest": str(manifest), "data_snapshot": data_snapshot(manifest)})
    if reliability_png is not None:
        _write_reliability(preds, calibration, reliability_png, card.name)
        report["reliability_png"] = str(reliability_png)
    if bboxes is not None:
        from radclip.eval.localization import localization_report

        weight = model.classifier.weight.detach().float().cpu().numpy()  # type: ignore[union-attr]
        bias = model.classifier.bias.detach().float().cpu().numpy()  # type: ignore[union-attr]
        report["localization"] = localization_report(preds, weight, bias, list(card.labels), bboxes, card.preprocessing.input_size)
    return report


def _write_reliability(preds: Predictions, calibration: LabelCalibration | None, path: str | Path, name: str) -> None:
    from radclip.eval.calibration import calibrated_probs, reliability_diagram

    known = ~np.all(np.isnan(preds.labels), axis=1)
    curves = {"uncalibrated": calibrated_probs(preds.logits[known], None)}
    if calibration is not None:
        curves["calibrated"] = calibrated_probs(preds.logits[known], calibration)
    reliability_diagram(preds.labels[known], curves, path, title=f"{name}: reliability (all labels pooled)")
