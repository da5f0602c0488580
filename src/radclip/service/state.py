"""What the service holds while it runs: one instance of each model, the engine, metrics.

``build_state`` is called once by the app's lifespan. Components that fail to load are
reported by ``/readyz`` with the reason instead of crashing the process, so triage keeps
answering when, say, the image–text model is missing. The retrieval index is opened on a
background thread (:class:`IndexWarmup`): load from disk on a warm start, build otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from radclip.service.metrics import ServiceMetrics
from radclip.settings import Settings

log = logging.getLogger(__name__)
INDEX_STATES = ("disabled", "warming", "ready", "failed")


@dataclass
class IndexWarmup:
    """Progress of the background index build, read by /readyz and /api/v1/retrieve."""

    state: str = "disabled"
    done: int = 0
    total: int = 0
    detail: str = ""
    started_at: float = 0.0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        frac = (self.done / self.total) if self.total else (1.0 if self.state == "ready" else 0.0)
        return {"state": self.state, "done": self.done, "total": self.total, "progress": round(frac, 4),
                "detail": self.detail, "seconds": round(self.seconds, 2)}  # fmt: skip


@dataclass
class ServiceState:
    settings: Settings
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    triage: Any | None = None  # radclip.runtime.triage_runner.TriageRunner
    clip: Any | None = None  # radclip.runtime.clip_runner.ClipRunner
    text: Any | None = None  # radclip.engine.text_cache.TextEmbeddingCache over clip
    registry: Any | None = None  # radclip.engine.registry.PromptRegistry
    screener: Any | None = None  # radclip.engine.screening.Screener
    index: Any | None = None  # radclip.engine.study_index.StudyIndex
    retriever: Any | None = None  # radclip.engine.retrieval.Retriever
    image_batcher: Any | None = None  # radclip.runtime.batcher.MicroBatcher for image embeddings
    warmup: IndexWarmup = field(default_factory=IndexWarmup)
    load_errors: dict[str, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    # -- background ---------------------------------------------------------------------
    def start_background(self) -> None:
        """Start opening the retrieval index on a thread; returns at once."""
        if self.index is None or not self.settings.index_on_start:
            return
        self.warmup = IndexWarmup(state="warming", started_at=time.monotonic())
        t = threading.Thread(target=self._open_index, name="radclip-index", daemon=True)
        self._threads.append(t)
        t.start()

    def _progress(self, done: int, total: int) -> None:
        self.warmup.done, self.warmup.total = done, total

    def _open_index(self) -> None:
        from radclip.engine.corpus import corpus_records
        from radclip.engine.study_index import BuildCancelled

        try:
            records = corpus_records(self.settings.resolved_corpus)
            self.warmup.total = len(records)
            report = self.index.open(records, progress=self._progress, cancel=self._stop)  # type: ignore[union-attr]
            self.warmup.state, self.warmup.detail = "ready", report.reason
            self.metrics.index_size.set(report.live)
            self._use_corpus_as_reference()
        except BuildCancelled:
            self.warmup.state, self.warmup.detail = "failed", "cancelled at shutdown; nothing was persisted"
        except Exception as exc:  # surfaced on /readyz; the rest of the service keeps working
            log.error("retrieval index not opened: %s", exc)
            self.warmup.state, self.warmup.detail = "failed", str(exc)
        self.warmup.seconds = time.monotonic() - self.warmup.started_at
        for s in INDEX_STATES:
            self.metrics.index_state.labels(s).set(1 if s == self.warmup.state else 0)

    def _use_corpus_as_reference(self) -> None:
        """Unlabelled conditions are scored relative to the indexed corpus (see engine.calibration)."""
        from radclip.engine.calibration import MIN_REFERENCE_IMAGES, ReferenceDistribution

        vectors, _ = self.index.index.vectors_and_ids()  # type: ignore[union-attr]
        if self.screener is not None and len(vectors) >= MIN_REFERENCE_IMAGES:
            self.screener.set_reference(ReferenceDistribution.from_embeddings(vectors))

    def stop_background(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)
        self._threads.clear()

    def close(self) -> None:
        if self.image_batcher is not None:
            self.image_batcher.close()
        for part in (self.registry, self.index):
            engine = getattr(part, "engine", None)
            if engine is not None:
                engine.dispose()

    # -- reporting -----------------------------------------------------------------------
    def model_versions(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.triage is not None:
            out["triage"] = self.triage.version_info()
        if self.clip is not None:
            out["clip"] = self.clip.version_info()
        if self.registry is not None:
            out["registry"] = {"version": self.registry.state_token()}
        return out

    def readiness(self) -> dict[str, Any]:
        ready = self.triage is not None and self.screener is not None
        cache = self.text.stats() if self.text is not None else None
        if cache is not None:
            self.metrics.cache_hit_rate.set(float(cache.get("hit_rate", 0.0)))
        return {
            "status": "ready" if ready else "degraded",
            "models": self.model_versions(),
            "index": self.warmup.to_dict(),
            "text_cache": cache,
            "load_errors": self.load_errors,
        }


def _exports_for(settings: Settings, name: str) -> tuple[Any, dict[str, Any]]:
    """The model's card and its verified ONNX exports (empty unless the backend allows ONNX)."""
    from radclip.models.registry import find_card
    from radclip.runtime.onnx_backend import find_exports

    card, _ = find_card(name)
    if settings.backend == "pytorch":
        return card, {}
    exports = find_exports(settings.resolved_export_dir, card)
    if settings.backend == "onnxruntime" and not exports:
        raise RuntimeError(f"RADCLIP_BACKEND=onnxruntime but no ONNX export of {card.name} in {settings.resolved_export_dir}; "
                           "run `radclip export onnx` first")  # fmt: skip
    return card, exports


def _load_triage(state: ServiceState) -> None:
    from radclip.runtime.triage_runner import TriageRunner

    s = state.settings
    card, exports = _exports_for(s, s.triage_model)
    if "triage" in exports:
        from radclip.runtime.onnx_backend import OnnxTriageRunner

        state.triage = OnnxTriageRunner(card, exports["triage"], threads=s.torch_threads)
    else:
        state.triage = TriageRunner.load(s.triage_model)
    c = state.triage.card
    state.metrics.model_info.labels("triage", c.name, c.version, state.triage.backend).set(1)


def _load_engine(state: ServiceState) -> None:
    import faiss

    from radclip.engine.registry import PromptRegistry
    from radclip.engine.retrieval import Retriever
    from radclip.engine.screening import Screener
    from radclip.engine.study_index import StudyIndex, default_load_fn
    from radclip.engine.text_cache import CacheConfig, TextEmbeddingCache
    from radclip.runtime.batcher import BatcherConfig, MicroBatcher
    from radclip.runtime.clip_runner import ClipRunner

    faiss.omp_set_num_threads(1)  # single-query searches: OpenMP start-up costs more than it saves
    s = state.settings
    card, exports = _exports_for(s, s.clip_model)
    if {"clip-image", "clip-text"} <= set(exports):
        from radclip.runtime.onnx_backend import OnnxClipRunner

        clip: Any = OnnxClipRunner(card, exports["clip-image"], exports["clip-text"], threads=s.torch_threads)
    else:
        clip = ClipRunner.load(s.clip_model)
    state.clip = clip
    state.metrics.model_info.labels("clip", clip.card.name, clip.card.version, clip.backend).set(1)
    state.text = TextEmbeddingCache(clip, CacheConfig(redis_url=s.redis_url))
    s.home.mkdir(parents=True, exist_ok=True)
    state.registry = PromptRegistry(s.resolved_database_url, embedder=state.text)
    if s.seed_conditions and not state.registry.list(active_only=False):
        state.registry.load_seed()
    state.screener = Screener(state.registry, image_version=clip.version, text_version=state.text.version)
    state.index = StudyIndex(clip, database=state.registry.engine, root=s.home / "index", load_fn=default_load_fn(clip.input_size))
    state.retriever = Retriever(state.index, text_embedder=state.text, image_embedder=clip)
    state.image_batcher = MicroBatcher(
        lambda items: list(clip.encode_images(__import__("numpy").stack(items))), BatcherConfig(max_batch=16, max_wait_ms=4.0),
        name="radclip-image-batcher", on_batch=lambda n: state.metrics.batch_size.labels("clip-image").observe(n),
    )


def build_state(settings: Settings) -> ServiceState:
    """Load each model once. Failures are recorded, not raised, so the service can still start."""
    state = ServiceState(settings=settings)
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    for part, loader in (("triage", _load_triage), ("clip", _load_engine)):
        try:
            loader(state)
        except Exception as exc:  # reported on /readyz; the routes that need it answer 503 with the reason
            log.error("%s not loaded: %s", part, exc)
            state.load_errors[part] = f"{type(exc).__name__}: {exc}"
    return state
