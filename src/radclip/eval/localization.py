"""CAM localisation against boxes: pointing game and IoU of the thresholded map.

* Pointing game: a hit when the map's maximum falls inside any box of that (image, label).
* IoU: the normalised map thresholded at ``threshold`` (share of its max) vs the union of the boxes.

Boxes come in the 256x256 frame of the shared PNGs (``bboxes.csv``: image_id, label, x, y, w, h);
the map is computed at the contract size S, so boxes are scaled by S / 256.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from radclip.eval.triage_eval import Predictions

BOX_FRAME = 256  # side of the frame bboxes.csv's x, y, w, h are given in
LABEL_ALIASES = {"Infiltrate": "Infiltration"}  # NIH box spelling -> label name


def box_mask(boxes: list[tuple[float, float, float, float]], size: int, scale: float) -> np.ndarray:
    """Boolean (size, size) mask of the union of ``(x, y, w, h)`` boxes scaled by ``scale``."""
    mask = np.zeros((size, size), dtype=bool)
    for x, y, w, h in boxes:
        x0, y0 = int(np.floor(x * scale)), int(np.floor(y * scale))
        x1, y1 = int(np.ceil((x + w) * scale)), int(np.ceil((y + h) * scale))
        mask[max(y0, 0) : min(y1, size), max(x0, 0) : min(x1, size)] = True
    return mask


def pointing_hit(heat: np.ndarray, mask: np.ndarray) -> bool:
    r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return bool(mask[r, c])


def thresholded_iou(heat: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> float:
    """IoU between ``heat >= threshold * max`` (after min-max normalisation) and ``mask``."""
    h = heat - heat.min()
    h = h / (h.max() + 1e-7)
    pred = h >= threshold
    union = np.logical_or(pred, mask).sum()
    return float(np.logical_and(pred, mask).sum() / union) if union else 0.0


def read_boxes(path: str | Path) -> dict[tuple[str, str], list[tuple[float, float, float, float]]]:
    import pandas as pd

    frame = pd.read_csv(path)
    need = {"image_id", "label", "x", "y", "w", "h"}
    if not need <= set(frame.columns):
        raise ValueError(f"{path} needs columns {sorted(need)}, it has {list(frame.columns)}")
    out: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    for row in frame.itertuples():
        label = LABEL_ALIASES.get(str(row.label), str(row.label))
        out.setdefault((str(row.image_id), label), []).append((float(row.x), float(row.y), float(row.w), float(row.h)))
    return out


def localization_report(preds: Predictions, weight: np.ndarray, bias: np.ndarray, labels: list[str], bboxes: str | Path, size: int, threshold: float = 0.5) -> dict[str, Any]:
    """Pointing-game hit rate and mean IoU over every (image, label) box set found among ``preds``."""
    import torch

    from radclip.explain.cam import class_activation_maps, upsample_maps

    if preds.features is None:
        raise ValueError("localization needs the feature maps; collect predictions with keep_features=True")
    boxes = read_boxes(bboxes)
    row_of = {img: i for i, img in enumerate(preds.image_ids)}
    cases = []
    for (image_id, label), bxs in sorted(boxes.items()):
        if image_id not in row_of or label not in labels:
            continue
        k = labels.index(label)
        feats = torch.from_numpy(preds.features[row_of[image_id]][None])
        cam = class_activation_maps(feats, torch.from_numpy(weight), torch.from_numpy(bias), [k])
        heat = upsample_maps(cam, size)[0, 0].numpy()
        mask = box_mask(bxs, size, size / BOX_FRAME)
        cases.append({"image_id": image_id, "label": label, "hit": pointing_hit(heat, mask), "iou": thresholded_iou(heat, mask, threshold)})
    n = len(cases)
    return {
        "n_boxes": n,
        "pointing_game": float(np.mean([c["hit"] for c in cases])) if n else None,
        "mean_iou": float(np.mean([c["iou"] for c in cases])) if n else None,
        "iou_threshold": threshold,
        "cases": cases,
    }
