"""The drift reference: the mean image embedding of a bounded train-split sample, shipped beside the image–text model.

The running service compares the rolling mean of incoming embeddings with this mean
(:mod:`radclip.engine.drift`). It is fitted once, offline, by ``radclip monitor drift-reference``
on the manifest's **train** split of the in-distribution sources (NIH + covid; never test, val or
the pool) and written to ``<model name>.drift.safetensors`` next to the model's weights with the
weights' sha256. A file made for other weights is refused, so retrained weights never reuse a stale
reference: rerun the command after replacing the weights.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radclip.engine.encoders import ImageEmbedder
from radclip.engine.reference import REFERENCE_SPLIT, ShippedArtifactError

DRIFT_SUFFIX = ".drift.safetensors"
# The sample behind the measured detection delay and false-alarm rate (docs/operations.md, benchmarks/drift_eval.py).
DEFAULT_SAMPLE = {"nih": 300, "covid": 50}
MIN_DRIFT_REFERENCE = 20  # below this the reference mean is too noisy to compare a 25-study window with
FIX = "run `radclip monitor drift-reference` for the loaded image-text weights"


@dataclass(frozen=True)
class DriftReference:
    mean: np.ndarray  # (D,) mean of the L2-normalised reference embeddings
    n: int
    model_sha256: str
    data_snapshot: str
    sources: str  # "covid:50,nih:300"


def drift_reference_path(card_file: Path, model_name: str) -> Path:
    """Where the drift reference of the model whose card is ``card_file`` lives (beside its weights)."""
    return Path(card_file).parent / f"{model_name}{DRIFT_SUFFIX}"


def sample_train_paths(manifest: Path, sample: dict[str, int], seed: int = 0) -> list[str]:
    """Up to ``sample[source]`` train-split paths per source, drawn without replacement (manifest order kept).

    The draw is the one of ``benchmarks/drift_eval.py`` (per source, ``default_rng(seed).choice``
    over that source's train rows in manifest order), so the shipped reference is the measured one.
    """
    by_source: dict[str, list[str]] = {s: [] for s in sample}
    with Path(manifest).open(newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] == REFERENCE_SPLIT and row["source"] in by_source:
                by_source[row["source"]].append(row["path"])
    out: list[str] = []
    for source, n in sample.items():
        paths = by_source[source]
        if not paths:
            raise ShippedArtifactError(f"{manifest} has no {REFERENCE_SPLIT} rows of source {source!r}")
        pick = np.random.default_rng(seed).choice(len(paths), min(n, len(paths)), replace=False)
        out += [paths[i] for i in sorted(pick)]
    return out


def embed_paths(embedder: ImageEmbedder, paths: list[Path], batch: int = 16) -> np.ndarray:
    """(N, D) embeddings of image files, decoded through the same image contract as the service."""
    from radclip.engine.study_index import default_load_fn

    load = default_load_fn(int(getattr(embedder, "input_size", 224)))
    chunks = [np.asarray(embedder.encode_images(np.stack([load(str(p)) for p in paths[i : i + batch]])))
              for i in range(0, len(paths), batch)]  # fmt: skip
    return np.concatenate(chunks).astype(np.float64)


def fit_drift_reference(
    embs: np.ndarray, model_sha256: str, data_snapshot: str, sources: str
) -> DriftReference:
    if len(embs) < MIN_DRIFT_REFERENCE:
        raise ShippedArtifactError(
            f"a drift reference needs at least {MIN_DRIFT_REFERENCE} train images, got {len(embs)}"
        )
    unit = embs / np.maximum(np.linalg.norm(embs, axis=1, keepdims=True), 1e-12)
    return DriftReference(unit.mean(axis=0), len(embs), model_sha256, data_snapshot, sources)


def save_drift_reference(path: Path, ref: DriftReference) -> Path:
    from safetensors.numpy import save_file

    meta = {"model_sha256": ref.model_sha256, "data_snapshot": ref.data_snapshot, "split": REFERENCE_SPLIT,
            "sources": ref.sources, "n": str(ref.n)}  # fmt: skip
    save_file({"mean": np.asarray(ref.mean, np.float32)}, str(path), metadata=meta)
    return Path(path)


def load_drift_reference(path: Path, model_sha256: str) -> DriftReference:
    """Load a shipped drift reference; refuse a missing file, other weights' file or a non-train one."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ShippedArtifactError(f"no drift reference at {path}; {FIX}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            mean = f.get_tensor("mean").astype(np.float64)
    except (SafetensorError, KeyError) as exc:
        raise ShippedArtifactError(f"{path.name} is not a drift reference ({exc}); {FIX}") from None
    if meta.get("model_sha256") != model_sha256:
        raise ShippedArtifactError(
            f"{path.name} was fitted for weights sha256 {meta.get('model_sha256')!r}, but the loaded model is "
            f"{model_sha256!r}; {FIX}"
        )
    if meta.get("split") != REFERENCE_SPLIT or mean.ndim != 1:
        raise ShippedArtifactError(f"{path.name} is not a 1-d mean of train-split embeddings; {FIX}")
    return DriftReference(mean, int(meta.get("n", "0")), model_sha256, meta.get("data_snapshot", ""),
                          meta.get("sources", ""))  # fmt: skip
