"""Heat-map overlays: a [0, 1] map coloured (jet) and alpha-blended over the grey radiograph."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def colorize(heat: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) float RGB in [0, 1] through a matplotlib colormap."""
    from matplotlib import colormaps

    return colormaps[cmap](np.clip(heat, 0.0, 1.0))[..., :3].astype(np.float32)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.4, cmap: str = "jet") -> np.ndarray:
    """Blend ``heat`` (H, W) over the grey ``image`` (H, W) in [0, 1]; returns uint8 RGB (H, W, 3)."""
    if image.shape != heat.shape:
        raise ValueError(f"image {image.shape} and heat map {heat.shape} differ in size; upsample the map to the image first")
    grey = np.repeat(np.clip(image, 0, 1)[..., None], 3, axis=2)
    rgb = (1 - alpha) * grey + alpha * colorize(heat, cmap)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def save_overlay_png(path: str | Path, image: np.ndarray, heats: list[np.ndarray], titles: list[str], alpha: float = 0.4) -> Path:
    """Write one PNG with the overlays side by side (one panel per map), each titled (label, probability)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = len(heats)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.5), dpi=110, squeeze=False)
    for ax, heat, title in zip(axes[0], heats, titles, strict=True):
        ax.imshow(overlay(image, heat, alpha))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
