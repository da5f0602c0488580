"""Training sources for the image-text model: images, texts, their label vectors and pairings.

Sources (names used by ``--sources``):

* ``nih``: NIH images with their 14 labels + no_finding; each gets ``captions_per_image``
  label-derived captions (:func:`radclip.models.prompts.caption_for_labels`) as its texts, plus
  ``negation_captions`` negation-aware ones naming an absent finding
  (:func:`radclip.models.prompts.negated_caption`, e.g. "... there is no pleural effusion.").
* ``iu``: IU/OpenI reports (text only), labelled by :func:`radclip.io.labeller.label_reports`;
  they join every batch as extra texts and are matched to images by label similarity.
* ``kermany``: a seeded random sample of at most :data:`KERMANY_TRAIN_IMAGES` Kermany pediatric images
  (pneumonia or normal, children aged 1-5). Their label vector says only what the source labels: Pneumonia
  (the other 13 findings unknown) or a normal study (all 14 absent, no_finding present); their captions are
  the NIH label captions said of a child (:func:`kermany_captions`). With this source the Kermany
  evaluation is no longer zero-shot: the model card says so.
* ``covid``: images with a clinical note in the manifest ``report`` column (covid, figure1); image and
  note share the labeller's labels of the note, and the pairs also get paired InfoNCE.

Everything is index-based: :class:`ClipSources` holds the images (contract arrays), the texts,
``(N, 15)`` label matrices (REPORT_LABELS order, CheXpert values, NaN unknown) and, per image,
the indices of its own texts. :func:`sample_batch` draws one training batch of indices.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from radclip.io.labels import NIH_LABELS, REPORT_LABELS

log = logging.getLogger(__name__)
SOURCES = ("nih", "iu", "covid")  # the default; "kermany" is opt-in
KNOWN_SOURCES = (*SOURCES, "kermany")
KERMANY_TRAIN_IMAGES = 800  # about half the NIH train images, so children do not dominate the batches
PEDIATRIC_PREFIX = "young child: "  # training-only wording (the evaluation prompts say "in a child")


@dataclass
class ClipSources:
    """Images and texts for training, with label vectors and image -> text pairings."""

    images: np.ndarray  # (Ni, 1, S, S) float32 contract arrays
    image_labels: np.ndarray  # (Ni, 15) REPORT_LABELS order, NaN unknown
    image_texts: list[list[int]]  # per image: indices of its own texts (captions or its note)
    image_paired: np.ndarray  # (Ni,) bool: the image's text is a genuine paired report (InfoNCE applies)
    texts: list[str] = field(default_factory=list)
    text_labels: np.ndarray = field(default_factory=lambda: np.zeros((0, len(REPORT_LABELS)), np.float32))
    extra_texts: np.ndarray = field(
        default_factory=lambda: np.zeros(0, np.int64)
    )  # text-only indices (IU reports)

    def __post_init__(self) -> None:
        if len(self.images) == 0:
            raise ValueError(
                "no training images: enable the 'nih' or 'covid' source and check the manifest split"
            )


def _nih_labels(frame: object) -> np.ndarray:
    import pandas as pd

    assert isinstance(frame, pd.DataFrame)
    cols = [*NIH_LABELS, "no_finding"]
    return frame[cols].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32)


class _Builder:
    """Accumulates images, texts, their labels and the image -> own-text links."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.own: list[list[int]] = []
        self.paired: list[bool] = []
        self.texts: list[str] = []
        self.text_labels: list[np.ndarray] = []

    def add_text(self, text: str, lab: np.ndarray) -> int:
        self.texts.append(text)
        self.text_labels.append(lab)
        return len(self.texts) - 1

    def add_image(self, image: np.ndarray, lab: np.ndarray, own: list[int], paired: bool) -> None:
        self.images.append(image)
        self.labels.append(lab)
        self.own.append(own)
        self.paired.append(paired)

    def build(self, extra: list[int], size: int) -> ClipSources:
        def stack(rows: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
            return np.stack(rows).astype(np.float32) if rows else np.zeros(shape, np.float32)

        return ClipSources(
            images=stack(self.images, (0, 1, size, size)),
            image_labels=stack(self.labels, (0, len(REPORT_LABELS))),
            image_texts=self.own,
            image_paired=np.asarray(self.paired, bool),
            texts=self.texts,
            text_labels=stack(self.text_labels, (0, len(REPORT_LABELS))),
            extra_texts=np.asarray(extra, np.int64),
        )


def _add_nih(
    b: _Builder,
    manifest: str | Path,
    root: str | Path,
    split: str,
    size: int,
    n_caps: int,
    rng: random.Random,
    n_neg: int = 0,
    neg_rng: random.Random | None = None,
) -> None:
    from radclip.io.datasets import ManifestDataset

    ds = ManifestDataset(manifest, root, split=split, sources=["nih"], size=size)
    lab = _nih_labels(ds.frame)
    for i, caps in enumerate(nih_captions(lab, n_caps, rng, n_neg, neg_rng)):
        b.add_image(ds.image(i), lab[i], [b.add_text(c, lab[i]) for c in caps], paired=False)


def nih_captions(
    labels: np.ndarray, n_caps: int, rng: random.Random, n_neg: int = 0, neg_rng: random.Random | None = None
) -> list[list[str]]:
    """Per image (rows of ``labels``, NIH_LABELS order first), the sorted distinct captions training uses.

    Exposed so the evaluation prompt set can be checked against exactly what the trainer builds.
    """
    from radclip.models.prompts import caption_for_labels, negated_caption

    neg_rng = neg_rng or random.Random(1)  # own stream: the plain captions are the same with or without
    out = []
    for row in labels:
        caps = {caption_for_labels(row[:14], rng=rng) for _ in range(n_caps)}
        caps |= {negated_caption(row[:14], rng=neg_rng) for _ in range(n_neg)}
        out.append(sorted(caps))
    return out


def kermany_captions(pneumonia: np.ndarray, n_caps: int, rng: random.Random) -> list[list[str]]:
    """Per Kermany image (1 = pneumonia, 0 = normal), its sorted distinct captions, said of a child."""
    from radclip.models.prompts import caption_for_labels

    pneu = NIH_LABELS.index("Pneumonia")
    out = []
    for p in pneumonia:
        row = np.zeros(len(NIH_LABELS), np.float32)
        row[pneu] = float(p)
        out.append(sorted({PEDIATRIC_PREFIX + caption_for_labels(row, rng=rng) for _ in range(n_caps)}))
    return out


def _add_kermany(
    b: _Builder, manifest: str | Path, root: str | Path, split: str, size: int, n_caps: int, seed: int
) -> None:
    from radclip.io.datasets import ManifestDataset

    ds = ManifestDataset(manifest, root, split=split, sources=["kermany"], size=size)
    finding = ds.frame["finding"].astype(str).str.lower()
    keep = [i for i, f in enumerate(finding) if f.startswith("pneumonia") or f == "no finding"]
    rows = sorted(random.Random(f"kermany-{seed}").sample(keep, min(KERMANY_TRAIN_IMAGES, len(keep))))
    pneumonia = np.asarray([finding.iloc[i].startswith("pneumonia") for i in rows], np.float32)
    pneu = NIH_LABELS.index("Pneumonia")
    for i, p, caps in zip(
        rows, pneumonia, kermany_captions(pneumonia, n_caps, random.Random(seed)), strict=True
    ):
        lab = np.full(len(REPORT_LABELS), np.nan, np.float32)  # only what the source labels is known
        if p:
            lab[pneu], lab[len(NIH_LABELS)] = 1.0, 0.0
        else:
            lab[: len(NIH_LABELS)], lab[len(NIH_LABELS)] = 0.0, 1.0
        b.add_image(ds.image(i), lab, [b.add_text(c, lab) for c in caps], paired=False)


def _add_notes(b: _Builder, manifest: str | Path, root: str | Path, split: str, size: int) -> None:
    from radclip.io.datasets import PairDataset
    from radclip.io.labeller import label_reports

    ds = PairDataset(manifest, root, split=split, size=size)  # every row with a report (covid, figure1)
    notes = [str(r) for r in ds.frame["report"]]
    lab = label_reports(notes).astype(np.float32)
    note_index: dict[str, int] = {}
    for i, note in enumerate(notes):
        if note not in note_index:  # one text per distinct note (several images can share one)
            note_index[note] = b.add_text(note, lab[i])
        b.add_image(ds.image(i), lab[i], [note_index[note]], paired=True)


def build_sources(
    manifest: str | Path,
    images_root: str | Path,
    iu_reports: str | Path | None,
    split: str = "train",
    sources: Sequence[str] = SOURCES,
    size: int = 224,
    captions_per_image: int = 4,
    seed: int = 0,
    negation_captions: int = 0,
) -> ClipSources:
    """Read the manifest (and IU reports) into :class:`ClipSources` for ``split``."""
    unknown = set(sources) - set(KNOWN_SOURCES)
    if unknown:
        raise ValueError(f"unknown training source(s) {sorted(unknown)}; choose from {KNOWN_SOURCES}")
    b = _Builder()
    if "nih" in sources:
        rng, neg_rng = random.Random(seed), random.Random(f"negation-{seed}")
        _add_nih(b, manifest, images_root, split, size, captions_per_image, rng, negation_captions, neg_rng)
    if "covid" in sources:
        _add_notes(b, manifest, images_root, split, size)
    if "kermany" in sources:
        _add_kermany(b, manifest, images_root, split, size, captions_per_image, seed)
    extra = _add_iu(iu_reports, split, b.add_text) if "iu" in sources and iu_reports is not None else []
    log.info("clip sources: %d images, %d texts (%d text-only)", len(b.images), len(b.texts), len(extra))
    return b.build(extra, size)


def _add_iu(path: str | Path, split: str, add_text: object) -> list[int]:
    import pandas as pd

    from radclip.io.labeller import label_reports

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "split" in frame.columns:
        frame = frame[frame["split"] == split]
    reports = [t for t in frame["report"].astype(str) if t.strip()]
    lab = label_reports(reports).astype(np.float32)
    known = ~np.isnan(lab).all(axis=1)  # a report with no labelled finding carries no matching signal
    return [add_text(t, lab[i]) for i, t in enumerate(reports) if known[i]]  # type: ignore[operator]


@dataclass
class Batch:
    """Indices of one step: images, texts, and which (image, text) rows are genuine pairs."""

    images: np.ndarray  # (B,) image indices
    texts: np.ndarray  # (B + extra,) text indices; text b < B is image b's own text
    paired: np.ndarray  # (B,) bool: image b and text b are a genuine report pair


def sample_batch(src: ClipSources, batch_size: int, extra_texts: int, rng: np.random.Generator) -> Batch:
    """``batch_size`` random images, one own text each, plus ``extra_texts`` random text-only reports."""
    img = rng.choice(len(src.images), size=min(batch_size, len(src.images)), replace=False)
    own = np.asarray([src.image_texts[i][rng.integers(len(src.image_texts[i]))] for i in img], np.int64)
    n_extra = min(extra_texts, len(src.extra_texts))
    extra = rng.choice(src.extra_texts, size=n_extra, replace=False) if n_extra else np.zeros(0, np.int64)
    return Batch(images=img, texts=np.concatenate([own, extra]), paired=src.image_paired[img])


class FeatureBank:
    """Trunk features, cached where the trunk is frozen, so frozen towers run once per input.

    ``image_embed(images, idx)`` / ``text_embed(texts)`` return *normalised, projected*
    embeddings with a graph through the trainable parts; frozen trunks are looked up
    (images by ``(key, index)``, texts by string) instead of being re-run every step.
    """

    def __init__(
        self, model: object, batch: int = 32, cache_dir: str | Path | None = None, read_only: bool = False
    ) -> None:
        self.model = model
        self.batch = batch
        self.read_only = read_only  # read the on-disk cache but never write it (DDP ranks other than 0)
        self.cache_dir = (
            Path(cache_dir) if cache_dir else None
        )  # frozen-trunk features persisted here between runs
        self._img: dict[str, object] = {}
        self._txt: dict[str, object] = {}
        self._txt_loaded = False

    def _tag(self, side: str) -> str:
        import hashlib
        import json
        from dataclasses import asdict

        trunk = self.model.visual.trunk if side == "img" else self.model.text.trunk  # type: ignore[attr-defined]
        cfg = asdict(trunk.cfg)
        if not cfg.get("tuned_layers"):
            cfg.pop(
                "tuned_layers", None
            )  # an untuned tower keeps the cache key it had before the field existed
        h = hashlib.sha1(json.dumps(cfg, sort_keys=True).encode())
        if side == "txt":
            for name, t in sorted(trunk.tuned_state().items()):  # fine-tuned text layers change every feature
                h.update(name.encode())
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
        if side == "img":
            # image features also depend on the frozen blocks' weights and BN buffers (always run in
            # eval mode): a different init file, or features cached by the old train-mode-BN code, never match
            h.update(b"frozen-eval-v2")
            for block in trunk.frozen_blocks():
                for name, t in sorted(block.state_dict().items()):
                    h.update(name.encode())
                    h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:12]

    def _disk(self, name: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / name

    def _load_texts(self) -> None:
        self._txt_loaded = True
        path = self._disk(f"text-{self._tag('txt')}.safetensors")
        if path is None or not path.is_file():
            return
        import json

        from radclip.models.weights import load_state_dict

        feats = load_state_dict(path)["features"]
        names = json.loads(path.with_suffix(".json").read_text())
        self._txt.update(zip(names, feats, strict=True))

    def save_texts(self) -> None:
        """Persist the cached frozen-trunk text features (no-op without ``cache_dir``)."""
        path = self._disk(f"text-{self._tag('txt')}.safetensors")
        if path is None or not self._txt or self.read_only:
            return
        import json

        import torch

        from radclip.models.weights import save_state_dict

        names = list(self._txt)
        save_state_dict({"features": torch.stack([self._txt[n] for n in names])}, path)  # type: ignore[misc]
        path.with_suffix(".json").write_text(json.dumps(names))

    @property
    def image_frozen(self) -> bool:
        """True when the image trunk has fixed leading blocks whose output is cached."""
        return self.model.visual.trunk.n_frozen > 0  # type: ignore[attr-defined]

    @property
    def text_frozen(self) -> bool:
        return bool(self.model.text.trunk.frozen)  # type: ignore[attr-defined]

    def image_features(self, key: str, images: np.ndarray, idx: np.ndarray) -> object:
        import torch

        m = self.model
        if not self.image_frozen:
            return m.image_features(torch.from_numpy(images[idx]))  # type: ignore[attr-defined]
        if key not in self._img:
            self._img[key] = self._frozen_images(key, images)
        cached = self._img[key][torch.as_tensor(idx)]  # type: ignore[index]
        return m.visual.trunk.forward_trainable(cached.to(m.logit_scale.device))  # type: ignore[attr-defined]

    def _frozen_images(self, key: str, images: np.ndarray) -> object:
        import torch

        from radclip.models.weights import load_state_dict, save_state_dict

        path = self._disk(f"img-{self._tag('img')}-{key}-{len(images)}.safetensors")
        if path is not None and path.is_file():
            return load_state_dict(path)["features"]
        with torch.no_grad():
            parts = [
                self.model.image_frozen_features(torch.from_numpy(images[s : s + self.batch]))
                for s in range(0, len(images), self.batch)
            ]  # type: ignore[attr-defined]
        feats = torch.cat(parts)
        if path is not None and not self.read_only:
            save_state_dict({"features": feats}, path)
        return feats

    def text_features(self, texts: Sequence[str]) -> object:
        import torch

        m = self.model
        if not self.text_frozen:
            return m.text_features(list(texts))  # type: ignore[attr-defined]
        if not self._txt_loaded:
            self._load_texts()
        todo = sorted({t for t in texts if t not in self._txt})
        with torch.no_grad():
            for s in range(0, len(todo), self.batch):
                chunk = todo[s : s + self.batch]
                for t, f in zip(chunk, m.text_features(chunk), strict=True):  # type: ignore[attr-defined]
                    self._txt[t] = f
        return torch.stack([self._txt[t] for t in texts])  # type: ignore[misc]

    def image_embed(self, key: str, images: np.ndarray, idx: np.ndarray) -> object:
        import torch.nn.functional as F

        return F.normalize(self.model.project_image(self.image_features(key, images, idx)), dim=-1)  # type: ignore[attr-defined]

    def text_embed(self, texts: Sequence[str]) -> object:
        import torch.nn.functional as F

        return F.normalize(self.model.project_text(self.text_features(texts)), dim=-1)  # type: ignore[attr-defined]
