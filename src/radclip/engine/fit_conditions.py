"""Fit per-condition calibrations from a labelled manifest split (the 14 NIH findings + no finding).

``radclip conditions calibrate --manifest CSV --split val`` embeds the split's labelled images with
the image model, fits one logistic per registered condition whose name is a manifest label column
(see :func:`radclip.engine.calibration.fit_calibration`; conditions with < 5 positives or negatives
stay on the label-free mapping) and stores the fits keyed by condition version and both model
versions, where the service's screener finds them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radclip.engine.calibration import LogisticCalibration
from radclip.engine.encoders import ImageEmbedder
from radclip.engine.screening import Screener

LABEL_COLUMNS_NO_FINDING = "no_finding"


def fit_from_manifest(screener: Screener, image_embedder: ImageEmbedder, manifest: Path, images_root: Path,
                      split: str = "val", size: int = 224, batch: int = 32) -> dict[str, LogisticCalibration]:  # fmt: skip
    """Embed the labelled rows of ``split`` and fit the conditions named like label columns."""
    from radclip.io.datasets import ManifestDataset
    from radclip.io.labels import NIH_LABELS

    ds = ManifestDataset(manifest, images_root, split=split, size=size)
    labels = np.concatenate([ds.labels_matrix(), ds.frame[[LABEL_COLUMNS_NO_FINDING]].to_numpy(np.float64)], axis=1)
    names = [*NIH_LABELS, LABEL_COLUMNS_NO_FINDING]
    known_rows = ~np.isnan(labels).all(axis=1)
    active = set(screener.matrix().names)
    cols = [j for j, n in enumerate(names) if n in active]
    if not known_rows.any() or not cols:
        raise ValueError(f"split {split!r} of {manifest} has no labelled rows for the registered conditions; "
                         "calibrate on a split with NIH labels (e.g. --split val)")  # fmt: skip
    rows = np.flatnonzero(known_rows)
    embs = np.concatenate([image_embedder.encode_images(np.stack([ds.image(int(i)) for i in rows[k : k + batch]]))
                           for k in range(0, len(rows), batch)])  # fmt: skip
    labels = labels[rows][:, cols]
    labels[labels < 0] = np.nan  # uncertain labels are unknown for fitting
    return screener.fit_calibration(embs, labels, [names[j] for j in cols], persist=True)
