"""The image contract: what every loader returns and what every model receives.

See ``docs/image-contract.md`` for the prose version. In short:

* A loader returns :class:`LoadedImage`: ``pixels`` is a 2-D ``float32`` array (H, W) in
  ``[0, 1]`` with **0 = black** (air is dark, bone is bright; MONOCHROME1 is inverted on
  load), rows top-to-bottom as stored, at the file's native resolution, plus
  :class:`ImageMeta`.
* A model receives the **contract tensor**: ``float32`` of shape ``(1, S, S)`` (``S`` = 224
  by default), values in ``[0, 1]``, made by a centre crop of the long side to a square
  then an anti-aliased resize (the same operation torchxrayvision uses). Each model's own
  normalisation (ImageNet mean/std, torchxrayvision's [-1024, 1024]) happens inside the
  model's preprocessing config, never in the loader.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

CONTRACT_SIZE = 224
CONTRACT_DTYPE = np.float32


@dataclass(frozen=True)
class ImageMeta:
    """Facts extracted while loading. ``None`` means the source did not say."""

    source_format: str  # "dicom", "png", "jpeg"
    photometric: str  # as handled: "MONOCHROME2", "MONOCHROME1 (inverted)", "RGB (to gray)", "L", "I;16", ...
    original_shape: tuple[int, int]  # (rows, columns) before any resizing
    bits_stored: int | None = None
    pixel_spacing_mm: tuple[float, float] | None = None  # (row, column) spacing
    view_position: str | None = None  # PA, AP, LL, ...
    modality: str | None = None
    patient_sex: str | None = None  # "M", "F", "O"
    patient_age_years: float | None = None
    patient_id: str | None = None  # kept for linking; never logged
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    sop_instance_uid: str | None = None
    study_date: str | None = None  # YYYYMMDD as in DICOM
    windowing: str | None = None  # how grey levels were mapped: "VOI LUT", "window 40/400", "min-max", ...
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["original_shape"] = list(self.original_shape)
        if self.pixel_spacing_mm is not None:
            out["pixel_spacing_mm"] = list(self.pixel_spacing_mm)
        return out


@dataclass(frozen=True)
class LoadedImage:
    """A decoded radiograph honouring the contract (see module docstring)."""

    pixels: np.ndarray
    meta: ImageMeta

    def __post_init__(self) -> None:
        check_loaded_pixels(self.pixels)


def check_loaded_pixels(pixels: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``pixels`` is a finite 2-D float32 array in [0, 1]."""
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 2:
        raise ValueError(f"contract pixels must be a 2-D array, got shape {getattr(pixels, 'shape', None)}")
    if pixels.dtype != CONTRACT_DTYPE:
        raise ValueError(f"contract pixels must be float32, got {pixels.dtype}")
    if pixels.size == 0 or not np.isfinite(pixels).all():
        raise ValueError("contract pixels must be non-empty and finite")
    lo, hi = float(pixels.min()), float(pixels.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"contract pixels must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]")


def center_crop_square(pixels: np.ndarray) -> np.ndarray:
    """Crop the long side so the image is square, keeping the centre (torchxrayvision's rule)."""
    h, w = pixels.shape[-2:]
    side = min(h, w)
    top = h // 2 - side // 2
    left = w // 2 - side // 2
    return pixels[..., top : top + side, left : left + side]


def to_contract_tensor(pixels: np.ndarray, size: int = CONTRACT_SIZE) -> np.ndarray:
    """Turn loader pixels (H, W) into the contract array ``(1, size, size)`` float32 in [0, 1]."""
    from skimage.transform import resize  # scikit-image: same resampling as torchxrayvision

    check_loaded_pixels(pixels)
    square = center_crop_square(pixels)
    if square.shape != (size, size):
        square = resize(square, (size, size), mode="constant", preserve_range=True)
    out = np.clip(square, 0.0, 1.0).astype(CONTRACT_DTYPE)[None]
    return np.ascontiguousarray(out)


def check_contract_tensor(x: Any, size: int | None = None) -> None:
    """Raise ``ValueError`` unless ``x`` (numpy or torch) has contract shape ``(1, S, S)`` or ``(N, 1, S, S)``."""
    shape = tuple(x.shape)
    if len(shape) not in (3, 4) or shape[-3] != 1 or shape[-1] != shape[-2]:
        raise ValueError(f"contract tensor must be (1, S, S) or (N, 1, S, S), got {shape}")
    if size is not None and shape[-1] != size:
        raise ValueError(f"contract tensor must be {size}x{size}, got {shape[-2]}x{shape[-1]}; use to_contract_tensor(pixels, size={size})")
