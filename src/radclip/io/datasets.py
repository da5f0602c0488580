"""Manifest-backed datasets: one item per image, as contract arrays plus labels and text.

Torch-free on purpose (plain ``__len__`` / ``__getitem__``): ``torch.utils.data.DataLoader``
collates the dict items (numpy arrays become tensors, strings become lists), and the triage,
CLIP and evaluation code share the exact same decoding path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from radclip.io.contract import CONTRACT_DTYPE, CONTRACT_SIZE, to_contract_tensor
from radclip.io.labels import NIH_LABELS, NO_FINDING
from radclip.io.manifest import ManifestError, labels_matrix, read_manifest, validate_manifest

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

Transform = Callable[[np.ndarray], np.ndarray]


def load_pixels(path: Path) -> np.ndarray:
    """Decode ``path`` to contract pixels (H, W) float32 in [0, 1] through the shared loader (one decoding path)."""
    from radclip.io.loader import load_image

    return load_image(path).pixels


def _as_list(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


class ManifestDataset:
    """Images listed in a manifest, filtered by split and source.

    ``manifest``: CSV path or an already-read DataFrame. ``images_root``: folder the manifest's
    ``path`` column is relative to (``data_root / "cxr"`` for the shared data). ``split``: one
    name or several; rows with a blank split are kept for any split. ``sources``: keep only
    these sources. ``size``: contract size. ``transform``: applied to the (1, S, S) contract
    array of every item (augmentation). ``cache``: keep decoded contract arrays in memory.
    """

    def __init__(
        self,
        manifest: str | Path | pd.DataFrame,
        images_root: str | Path,
        split: str | Sequence[str] | None = None,
        sources: Sequence[str] | None = None,
        size: int = CONTRACT_SIZE,
        transform: Transform | None = None,
        cache: bool = False,
    ) -> None:
        frame = read_manifest(manifest) if isinstance(manifest, str | Path) else validate_manifest(manifest, origin="manifest DataFrame")
        self.images_root = Path(images_root)
        self.size = int(size)
        self.transform = transform
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}
        frame = _filter(frame, _as_list(split), _as_list(sources))
        frame = self._select(frame)
        if frame.empty:
            raise ManifestError(f"no rows left after filtering (split={split!r}, sources={sources!r}); check the split and source names")
        self._frame = frame.reset_index(drop=True)
        self._check_files()

    def _select(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Hook for subclasses that keep a subset of rows."""
        return frame

    def _check_files(self) -> None:
        if not self.images_root.is_dir():
            raise ManifestError(f"images root {self.images_root} is not a folder; pass the folder the manifest's 'path' column is relative to (data_root/'cxr')")
        missing = [p for p in self._frame["path"] if not (self.images_root / p).is_file()]
        if missing:
            raise ManifestError(f"{len(missing)} image file(s) listed in the manifest are missing under {self.images_root}, e.g. {missing[:3]}; check images_root")

    @property
    def frame(self) -> pd.DataFrame:
        """The filtered, validated manifest rows (row i is item i)."""
        return self._frame

    def labels_matrix(self) -> np.ndarray:
        """(N, 14) float32 labels in NIH_LABELS order, NaN = unknown."""
        return labels_matrix(self._frame)

    def __len__(self) -> int:
        return len(self._frame)

    def image(self, index: int) -> np.ndarray:
        """The (1, size, size) contract array of item ``index``, before ``transform``."""
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        path = self.images_root / self._frame.at[index, "path"]
        arr = to_contract_tensor(load_pixels(path), self.size)
        if self.cache:
            arr.setflags(write=False)  # shared between items: a transform must not edit it in place
            self._cache[index] = arr
        return arr

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} images")
        index = int(index) % n
        image = self.image(index)
        # Items are the caller's to modify (DataLoader collation needs writable arrays); the cache stays read-only.
        image = self._apply_transform(image) if self.transform is not None else (image if image.flags.writeable else image.copy())
        row = self._frame.iloc[index]
        return {
            "image": image,
            "labels": row[list(NIH_LABELS)].to_numpy(dtype=np.float32),
            "no_finding": float(row[NO_FINDING]),
            "image_id": row["image_id"],
            "patient_id": row["patient_id"],
            "source": row["source"],
            "split": row["split"],
            "report": row["report"],
            "age": float(row["age"]),
            "sex": row["sex"],
            "view": row["view"],
        }

    def _apply_transform(self, image: np.ndarray) -> np.ndarray:
        out = np.asarray(self.transform(image.copy() if not image.flags.writeable else image))  # type: ignore[misc]
        if out.shape != (1, self.size, self.size):
            raise ValueError(f"transform returned shape {out.shape}; it must keep the contract shape (1, {self.size}, {self.size})")
        return np.ascontiguousarray(out, dtype=CONTRACT_DTYPE)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, size={self.size}, sources={sorted(self._frame['source'].unique())})"


class PairDataset(ManifestDataset):
    """Image-report pairs: the :class:`ManifestDataset` rows whose ``report`` is non-empty."""

    def _select(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["report"].str.strip() != ""]


def _filter(frame: pd.DataFrame, splits: list[str] | None, sources: list[str] | None) -> pd.DataFrame:
    if splits is not None:
        known = set(frame["split"]) - {""}
        unknown = [s for s in splits if s not in known]
        if unknown and known:
            raise ManifestError(f"split(s) {unknown} not in the manifest; it has {sorted(known)}")
        blank = frame["split"] == ""
        if blank.any():
            log.warning("%d manifest rows have no split; they are used for every split", int(blank.sum()))
        frame = frame[frame["split"].isin(splits) | blank]
    if sources is not None:
        known = set(frame["source"])
        unknown = [s for s in sources if s not in known]
        if unknown:
            raise ManifestError(f"source(s) {unknown} not in the manifest rows; it has {sorted(known)}")
        frame = frame[frame["source"].isin(sources)]
    return frame
