"""Heat maps for the discordance review: per served study, one grey thumbnail and each version's class activation maps.

Written by the shadow worker, off the request path, when more than one version scored a study
(a shadow or canary was active): the answering version's maps come from the request's own forward
pass, the others' from the worker's run; nothing is recomputed. Read by
``GET /api/v1/review/discordant/{study}/heatmap``, which draws one version's map of one finding
over the thumbnail.

Layout, under ``RADCLIP_HOME/review/`` only: ``<sha256(study key)[:32]>/thumb.png`` (uint8 grey) and
``maps.npz`` (``refs`` (V,), ``labels`` (K,), ``maps`` uint8 (V, K, m, m): each map min-max
normalised, as the overlay shows it) and ``study.json`` (the study key). The folder name is a hash,
so no StudyInstanceUID appears in a path. The thumbnail is PHI-adjacent (a picture of the patient's
radiograph): the store is bounded by :class:`ReviewStoreConfig` and deleted oldest first.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DAY_S = 86400.0
STALE_TMP_S = 3600.0  # a half-written study folder this old was left by a crash: deleted on the next prune


@dataclass(frozen=True)
class ReviewStoreConfig:
    max_studies: int = 2000  # studies kept; beyond this the oldest are deleted first
    max_age_days: float = 30.0  # studies older than this are deleted (0: no age limit)
    map_size: int = 32  # side of each stored map (uint8); the shipped network's own CAM is 7x7
    thumb_size: int = 128  # side of the grey thumbnail; the overlay is drawn at this size

    def __post_init__(self) -> None:
        if self.max_studies < 1:
            raise ValueError(f"max_studies must be at least 1, got {self.max_studies}")
        if self.max_age_days < 0:
            raise ValueError(f"max_age_days must be >= 0 (0: no age limit), got {self.max_age_days}")
        if not (4 <= self.map_size <= self.thumb_size <= 512):
            raise ValueError(
                f"need 4 <= map_size <= thumb_size <= 512, got {self.map_size} and {self.thumb_size}"
            )


class NotStored(LookupError):
    """No heat map kept for this study or version (never served beside another version, or deleted by retention)."""


class UnknownFinding(ValueError):
    """The finding is not one of the stored version's labels."""


@dataclass(frozen=True)
class StoredStudy:
    study_key: str
    thumbnail: np.ndarray  # (T, T) float in [0, 1]
    refs: tuple[str, ...]  # name@version of each stored version
    labels: tuple[str, ...]
    maps: np.ndarray  # (V, K, m, m) uint8

    def heat(self, ref: str, finding: str) -> np.ndarray:
        """The map of ``finding`` by ``ref``, bilinear to the thumbnail's size and min-max normalised, (T, T) in [0, 1]."""
        if ref not in self.refs:
            raise NotStored(
                f"study {self.study_key!r} has no heat maps of {ref!r}; kept: {', '.join(self.refs)}"
            )
        k = finding_index(self.labels, finding)
        small = self.maps[self.refs.index(ref), k].astype(np.float32) / 255.0
        return _normalise(_resize(small, self.thumbnail.shape[0], "bilinear"))


def finding_index(labels: Sequence[str], finding: str) -> int:
    lookup = {name.lower(): i for i, name in enumerate(labels)}
    key = finding.strip().lower().replace(" ", "_")
    if key not in lookup:
        import difflib

        close = difflib.get_close_matches(key, list(lookup), n=1)
        hint = f"; did you mean {labels[lookup[close[0]]]!r}?" if close else ""
        raise UnknownFinding(f"unknown finding {finding!r}{hint} Known: {', '.join(labels)}")
    return lookup[key]


def _resize(a: np.ndarray, size: int, how: str) -> np.ndarray:
    from PIL import Image

    if a.shape == (size, size):
        return a.astype(np.float32)
    resample = {"box": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR}[how]
    img = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")
    return np.asarray(img.resize((size, size), resample), dtype=np.float32)


def _normalise(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / max(hi - lo, 1e-7)


def version_maps(runner: Any, result: Any, size: int) -> np.ndarray:
    """Every finding's CAM of one scored study, ``(K, size, size)`` in [0, 1], from the result's kept features (no new pass)."""
    return np.stack([_normalise(_resize(runner.cam(result, label), size, "box")) for label in result.labels])


def _png(a: np.ndarray, mode: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


class ReviewStore:
    """The heat-map store of one ``RADCLIP_HOME``; one writer (the shadow worker), any number of readers."""

    def __init__(self, root: str | Path, config: ReviewStoreConfig | None = None) -> None:
        self.root = Path(root)
        self.config = config or ReviewStoreConfig()

    @classmethod
    def for_home(cls, home: str | Path, config: ReviewStoreConfig | None = None) -> ReviewStore:
        return cls(Path(home) / "review", config)

    def _dir(self, study_key: str) -> Path:
        return self.root / hashlib.sha256(study_key.encode()).hexdigest()[:32]

    def save(self, study_key: str, image: np.ndarray, maps: Mapping[str, np.ndarray], labels: Sequence[str],
             now: float | None = None) -> bool:  # fmt: skip
        """Keep ``image`` (S, S) in [0, 1] and each version's ``(K, m', m')`` maps; False when the study is already kept.

        A re-served study keeps its first maps, as the prediction log keeps its first predictions.
        """
        final = self._dir(study_key)
        if final.exists():
            return False
        c = self.config
        stack = np.stack([np.stack([_resize(m, c.map_size, "box") for m in maps[ref]]) for ref in maps])
        if stack.shape[1] != len(labels):
            raise ValueError(
                f"{stack.shape[1]} maps per version but {len(labels)} labels; pass result.labels"
            )
        thumb = _resize(np.clip(image, 0.0, 1.0), c.thumb_size, "box")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            (tmp / "thumb.png").write_bytes(_png((thumb * 255 + 0.5).astype(np.uint8), "L"))
            np.savez_compressed(tmp / "maps.npz", refs=np.array(list(maps)), labels=np.array(list(labels)),
                                maps=(np.clip(stack, 0, 1) * 255 + 0.5).astype(np.uint8))  # fmt: skip
            (tmp / "study.json").write_text(json.dumps({"study_key": study_key, "refs": list(maps)}))
            at = time.time() if now is None else now
            os.utime(tmp, (at, at))  # retention orders by the folder's time
            tmp.rename(final)  # atomic: a reader sees the whole study or none of it
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if final.exists():  # another writer won the race: the first maps stay
                return False
            raise
        self.prune(now)
        return True

    def load(self, study_key: str) -> StoredStudy:
        folder = self._dir(study_key)
        try:
            from PIL import Image

            with Image.open(folder / "thumb.png") as img:
                thumb = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
            with np.load(folder / "maps.npz") as z:
                refs, labels, maps = tuple(map(str, z["refs"])), tuple(map(str, z["labels"])), z["maps"]
        except FileNotFoundError:  # never kept, or deleted by retention (possibly while reading)
            raise NotStored(f"no heat maps kept for study {study_key!r}: it was not served beside a shadow or "
                            f"canary, or it is older than the retention ({self.config.max_studies} studies, "
                            f"{self.config.max_age_days:g} days)") from None  # fmt: skip
        return StoredStudy(study_key, thumb, refs, labels, maps)

    def overlay_png(self, study_key: str, ref: str, finding: str, alpha: float = 0.4) -> bytes:
        """One version's map of one finding over the thumbnail, as an RGB PNG (the explain overlay's colours)."""
        from radclip.explain.overlay import overlay

        study = self.load(study_key)
        return _png(overlay(study.thumbnail, study.heat(ref, finding), alpha), "RGB")

    def _entries(self) -> list[tuple[float, Path]]:
        if not self.root.is_dir():
            return []
        out = []
        for entry in os.scandir(self.root):
            if entry.is_dir() and not entry.name.startswith("."):
                try:
                    out.append((entry.stat().st_mtime, Path(entry.path)))
                except FileNotFoundError:
                    continue
        return sorted(out)

    def __len__(self) -> int:
        return len(self._entries())

    def prune(self, now: float | None = None) -> int:
        """Delete studies past the age limit, then the oldest beyond the count; returns how many were deleted."""
        entries, c = self._entries(), self.config
        now = time.time() if now is None else now
        cutoff = now - c.max_age_days * DAY_S if c.max_age_days > 0 else float("-inf")
        old = [p for t, p in entries if t < cutoff]
        keep = [p for t, p in entries if t >= cutoff]
        doomed = old + keep[: max(0, len(keep) - c.max_studies)]
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)
        for tmp in self.root.glob(".tmp-*") if self.root.is_dir() else []:  # a write cut short by a crash
            try:
                if tmp.stat().st_mtime < now - STALE_TMP_S:
                    shutil.rmtree(tmp, ignore_errors=True)
            except FileNotFoundError:
                continue
        return len(doomed)
