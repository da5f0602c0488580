"""The label-free reference population, fitted on the training split and shipped beside the image–text model.

The screener's label-free mapping (:class:`~radclip.engine.calibration.ReferenceDistribution`)
standardises each condition's cosine by the mean and covariance of a reference population of
image embeddings. Those statistics are fitted once, on the manifest's **train** split (all
sources), and written to ``<model name>.reference.safetensors`` next to the model's weights with
the model's weights sha256 and the manifest's data snapshot. The service loads that file; it never
computes statistics from the corpus it serves (the default corpus, ``cxr/pool``, is the holdout).
A file made for other weights is refused, so a retrained model never reuses a stale reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from radclip.engine.calibration import MIN_REFERENCE_IMAGES, ReferenceDistribution
from radclip.engine.encoders import ImageEmbedder

if TYPE_CHECKING:
    import pandas as pd

REFERENCE_SUFFIX = ".reference.safetensors"
REFERENCE_SPLIT = "train"  # the only split reference statistics may come from


class ShippedArtifactError(ValueError):
    """A shipped reference or calibration file is missing, malformed or made for other weights."""


@dataclass(frozen=True)
class ShippedReference:
    distribution: ReferenceDistribution
    model_sha256: str  # weights the embeddings came from
    data_snapshot: str  # radclip.io.manifest.data_snapshot of the manifest it was fitted on
    split: str
    sources: str  # comma-separated manifest sources in the fit


def reference_path(card_file: Path, model_name: str) -> Path:
    """Where the reference of the model whose card is ``card_file`` lives (beside its weights)."""
    return Path(card_file).parent / f"{model_name}{REFERENCE_SUFFIX}"


def save_reference(path: Path, ref: ShippedReference) -> Path:
    from safetensors.numpy import save_file

    d = ref.distribution
    tensors = {"mean": np.asarray(d.mean, np.float32), "cov": np.asarray(d.cov, np.float32)}
    meta = {"model_sha256": ref.model_sha256, "data_snapshot": ref.data_snapshot, "split": ref.split,
            "sources": ref.sources, "n": str(d.n)}  # fmt: skip
    save_file(tensors, str(path), metadata=meta)
    return Path(path)


def load_reference(path: Path, model_sha256: str) -> ShippedReference:
    """Load a shipped reference; refuse one fitted with other weights or not on the train split."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ShippedArtifactError(
            f"no reference statistics at {path}; run `radclip conditions calibrate --ship` to make them"
        )
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
        mean, cov = f.get_tensor("mean").astype(np.float64), f.get_tensor("cov").astype(np.float64)
    if meta.get("model_sha256") != model_sha256:
        raise ShippedArtifactError(
            f"{path.name} was fitted for weights sha256 {meta.get('model_sha256')!r}, but the loaded model is {model_sha256!r}; "
            "rerun `radclip conditions calibrate --ship` for these weights"
        )
    if meta.get("split") != REFERENCE_SPLIT:
        raise ShippedArtifactError(
            f"{path.name} was fitted on split {meta.get('split')!r}; reference statistics must come from 'train'"
        )
    dist = ReferenceDistribution(mean, cov, int(meta.get("n", "0")))
    return ShippedReference(
        dist, model_sha256, meta.get("data_snapshot", ""), REFERENCE_SPLIT, meta.get("sources", "")
    )


def embed_split(image_embedder: ImageEmbedder, manifest: Path, images_root: Path, split: str,
                batch: int = 64) -> tuple[np.ndarray, pd.DataFrame]:  # fmt: skip
    """(embeddings (N, D), the split's manifest frame) for every row of ``split``, all sources."""
    from radclip.io.datasets import ManifestDataset

    ds = ManifestDataset(
        manifest, images_root, split=split, size=int(getattr(image_embedder, "input_size", 224))
    )
    chunks = [image_embedder.encode_images(np.stack([ds.image(i) for i in range(k, min(k + batch, len(ds)))]))
              for k in range(0, len(ds), batch)]  # fmt: skip
    return np.concatenate(chunks).astype(np.float32), ds.frame


def fit_reference(
    embs: np.ndarray, frame: pd.DataFrame, model_sha256: str, data_snapshot: str
) -> ShippedReference:
    """The reference of train-split embeddings; ``frame`` is the split's manifest rows (checked: train only)."""
    splits = set(frame["split"].astype(str))
    if splits != {REFERENCE_SPLIT}:
        raise ShippedArtifactError(
            f"reference statistics must be fitted on the train split only; got rows of {sorted(splits)}"
        )
    if len(embs) < MIN_REFERENCE_IMAGES:
        raise ShippedArtifactError(
            f"the train split has {len(embs)} images; a reference needs at least {MIN_REFERENCE_IMAGES}"
        )
    sources = ",".join(sorted(set(frame["source"].astype(str))))
    return ShippedReference(
        ReferenceDistribution.from_embeddings(embs), model_sha256, data_snapshot, REFERENCE_SPLIT, sources
    )
