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

import numpy as np

from radclip.runtime.accelerator import Accelerator
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
    screen_graph: Any | None = None  # radclip.runtime.onnx_backend.OnnxScreenRunner: triage + embedding in one pass
    screen_batcher: Any | None = None  # MicroBatcher over screen_graph
    drift: Any | None = None  # radclip.lifecycle.drift_monitor.DriftMonitor, fed by both image batchers
    accelerator: Accelerator | None = None  # device and ONNX Runtime providers, selected once in build_state
    warmup: IndexWarmup = field(default_factory=IndexWarmup)
    load_errors: dict[str, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    # -- background ---------------------------------------------------------------------
    def start_background(self) -> None:
        """Start warming the screener and opening the retrieval index on threads; returns at once."""
        # The first /screen would otherwise pay the lazy imports of decoding (~0.4 s), the models' first
        # runs and the condition matrix (70 prompt ensembles, ~80 ms).
        t = threading.Thread(target=self._warm_up, name="radclip-warmup", daemon=True)
        self._threads.append(t)
        t.start()
        if self.index is None or not self.settings.index_on_start:
            return
        self.warmup = IndexWarmup(state="warming", started_at=time.monotonic())
        t = threading.Thread(target=self._open_index, name="radclip-index", daemon=True)
        self._threads.append(t)
        t.start()

    def _warm_up(self) -> None:
        try:
            import io

            import numpy as np
            from PIL import Image

            from radclip.service.imaging import decode_upload
            from radclip.service.uploads import Upload

            buf = io.BytesIO()
            Image.fromarray(np.zeros((64, 64), np.uint8), mode="L").save(buf, format="PNG")
            if self.triage is not None:
                decoded = decode_upload(Upload(buf.getvalue(), None, "image/png"), self.triage.input_size, self.settings.max_image_pixels)
                self.triage.run(decoded.contract)
                if self.clip is not None and self.clip.input_size == self.triage.input_size:
                    self.clip.encode_images(decoded.contract[None])
                if self.screen_graph is not None:
                    self.screen_graph.run(decoded.contract)
        except Exception as exc:  # only an optimisation: requests load what they need
            log.warning("model warm-up failed: %s", exc)
        self._warm_screener()

    def _warm_screener(self) -> None:
        try:
            self.screener.matrix()
        except Exception as exc:  # a request will retry and report it; warming is only an optimisation
            log.warning("screener warm-up failed: %s", exc)

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
        except BuildCancelled:
            self.warmup.state, self.warmup.detail = "failed", "cancelled at shutdown; nothing was persisted"
        except Exception as exc:  # surfaced on /readyz; the rest of the service keeps working
            log.error("retrieval index not opened: %s", exc)
            self.warmup.state, self.warmup.detail = "failed", str(exc)
        self.warmup.seconds = time.monotonic() - self.warmup.started_at
        for s in INDEX_STATES:
            self.metrics.index_state.labels(s).set(1 if s == self.warmup.state else 0)

    def stop_background(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)
        self._threads.clear()

    def close(self) -> None:
        for batcher in (self.image_batcher, self.screen_batcher):
            if batcher is not None:
                batcher.close()
        for part in (self.registry, self.index):
            engine = getattr(part, "engine", None)
            if engine is not None:
                engine.dispose()

    # -- reporting -----------------------------------------------------------------------
    def model_versions(self, registry_version: str | None = None) -> dict[str, Any]:
        """Versions of what answered; pass the screened result's ``registry_version`` to skip a query."""
        out: dict[str, Any] = {}
        if self.triage is not None:
            out["triage"] = self.triage.version_info()
        if self.clip is not None:
            out["clip"] = self.clip.version_info()
        if self.registry is not None:
            try:
                out["registry"] = {"version": registry_version or self.registry.state_token()}
            except Exception as exc:  # database down: /readyz must still answer and say so
                log.warning("registry version unavailable: %s", type(exc).__name__)
                out["registry"] = {"version": None, "unavailable": True}
        return out

    def accelerator_status(self) -> dict[str, Any]:
        """The device and ONNX Runtime providers the models were loaded on, or why none was selected."""
        if self.accelerator is not None:
            return self.accelerator.to_dict()
        failed = "accelerator" in self.load_errors
        return {"device": None, "onnx_providers": [], "requested": self.settings.device,
                "reason": "selection failed (see load_errors)" if failed else "not selected: no model was loaded"}  # fmt: skip

    def readiness(self) -> dict[str, Any]:
        ready = self.triage is not None and self.screener is not None
        cache = self.text.stats() if self.text is not None else None
        if cache is not None:
            self.metrics.cache_hit_rate.set(float(cache.get("hit_rate", 0.0)))
        return {
            "status": "ready" if ready else "degraded",
            "models": self.model_versions(),
            "index": self.warmup.to_dict(),
            "screen_path": "fused" if self.screen_graph is not None else "separate",
            "accelerator": self.accelerator_status(),
            "text_cache": cache,
            "drift": self.drift.status() if self.drift is not None else {"state": "unavailable", "reason": "the image-text model is not loaded"},
            "load_errors": self.load_errors,
        }


def _load_triage(state: ServiceState) -> None:
    from radclip.runtime.loading import load_triage_runner

    state.triage = load_triage_runner(state.settings, state.accelerator)
    c = state.triage.card
    state.metrics.model_info.labels("triage", c.name, c.version, state.triage.backend).set(1)


def _load_engine(state: ServiceState) -> None:
    from radclip.engine.registry import PromptRegistry
    from radclip.engine.retrieval import Retriever
    from radclip.engine.screening import Screener
    from radclip.engine.study_index import StudyIndex, default_load_fn
    from radclip.engine.text_cache import CacheConfig, TextEmbeddingCache
    from radclip.runtime.batcher import BatcherConfig, MicroBatcher
    from radclip.runtime.loading import load_clip_runner

    s = state.settings
    clip = state.clip = load_clip_runner(s, state.accelerator)
    state.metrics.model_info.labels("clip", clip.card.name, clip.card.version, clip.backend).set(1)
    state.text = TextEmbeddingCache(clip, CacheConfig(redis_url=s.redis_url))
    s.home.mkdir(parents=True, exist_ok=True)
    state.registry = PromptRegistry(s.resolved_database_url, embedder=state.text)
    if s.seed_conditions and not state.registry.list(active_only=False):
        state.registry.load_seed()
    state.screener = Screener(state.registry, image_version=clip.version, text_version=state.text.version,
                              shipped=_load_shipped(state, "calibration", s.clip_model, clip.card))  # fmt: skip
    reference = _load_shipped(state, "reference", s.clip_model, clip.card)
    if reference is not None:
        state.screener.set_reference(reference.distribution)
    state.index = StudyIndex(clip, database=state.registry.engine, root=s.home / "index", load_fn=default_load_fn(clip.input_size))
    state.retriever = Retriever(state.index, text_embedder=state.text, image_embedder=clip)
    from radclip.lifecycle.drift_monitor import build_drift_monitor

    state.drift = build_drift_monitor(s.clip_model, clip.card, state.metrics.registry)
    state.image_batcher = MicroBatcher(
        lambda items: _encode_batch(state, items), BatcherConfig(max_batch=16),
        name="radclip-image-batcher", on_batch=lambda n: state.metrics.batch_size.labels("clip-image").observe(n),
    )


def _encode_batch(state: ServiceState, items: list[np.ndarray]) -> list[np.ndarray]:
    """The image batcher's work: encode, then observe the encoding latency and feed the drift monitor."""
    start = time.perf_counter()
    embeddings = np.asarray(state.clip.encode_images(np.stack(items)))  # type: ignore[union-attr]
    _observe_images(state, state.clip.backend, time.perf_counter() - start, embeddings)  # type: ignore[union-attr]
    return list(embeddings)


def _screen_batch(state: ServiceState, graph: Any, items: list[np.ndarray]) -> list[Any]:
    """The fused /screen batcher's work: triage + embedding in one pass, observed like ``_encode_batch``."""
    start = time.perf_counter()
    out = graph.run_batch(np.stack(items))
    _observe_images(state, f"{graph.backend}-fused", time.perf_counter() - start, np.stack([e for _, e in out]))
    return out


def _observe_images(state: ServiceState, backend: str, seconds: float, embeddings: np.ndarray) -> None:
    # Each image waited for the whole batch call, so each counts it: the histogram is per-request encoding latency.
    for _ in range(len(embeddings)):
        state.metrics.inference.labels("clip-image", backend).observe(seconds)
    if state.drift is not None:
        state.drift.observe(embeddings)


def _load_shipped(state: ServiceState, kind: str, model: str, card: Any) -> Any | None:
    """The model's shipped ``reference`` statistics or ``calibration`` fits, or None (a refused file: reason on /readyz).

    Both are fitted offline (train split; val split) by ``radclip conditions calibrate --ship`` and
    checked against the loaded weights' sha256; nothing is ever fitted on the corpus being served.
    """
    from radclip.engine.calibration import CALIBRATION_SUFFIX, load_shipped_calibrations
    from radclip.engine.reference import REFERENCE_SUFFIX, load_reference
    from radclip.models.registry import find_card

    _, card_file = find_card(model)
    suffix, loader = (REFERENCE_SUFFIX, load_reference) if kind == "reference" else (CALIBRATION_SUFFIX, load_shipped_calibrations)
    path = card_file.parent / f"{card.name}{suffix}"
    if not path.is_file():  # a model shipped without one (tests, custom weights): the fallback mapping, no error
        log.info("no shipped %s for %s (%s); run `radclip conditions calibrate --ship` to make one", kind, card.name, path)
        return None
    try:
        return loader(path, card.weights_sha256)
    except (ValueError, OSError, KeyError) as exc:  # the screener still works, on the documented fallback mapping
        log.warning("shipped %s not used: %s", kind, exc)
        state.load_errors[kind] = f"{type(exc).__name__}: {exc}"
        return None


def build_state(settings: Settings) -> ServiceState:
    """Load each model once. Failures are recorded, not raised, so the service can still start."""
    state = ServiceState(settings=settings)
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    from radclip.runtime.loading import accelerator_for

    try:
        state.accelerator = accelerator_for(settings)
        log.info("accelerator: %s", state.accelerator.reason)
    except (RuntimeError, ValueError) as exc:  # RADCLIP_DEVICE=cuda unmet: models fail the same way
        log.error("accelerator not selected: %s", exc)
        state.load_errors["accelerator"] = f"{type(exc).__name__}: {exc}"
    for part, loader in (("triage", _load_triage), ("clip", _load_engine)):
        try:
            loader(state)
        except Exception as exc:  # reported on /readyz; the routes that need it answer 503 with the reason
            log.error("%s not loaded: %s", part, exc)
            state.load_errors[part] = f"{type(exc).__name__}: {exc}"
    if state.triage is not None and state.clip is not None:
        from radclip.runtime.loading import load_screen_runner

        try:
            graph = load_screen_runner(settings, state.triage, state.clip, state.accelerator)
            state.screen_graph = graph
        except Exception as exc:  # an optimisation only: /screen falls back to the two graphs
            log.error("fused /screen graph not loaded, using two graphs: %s", exc)
            state.load_errors["screen"] = f"{type(exc).__name__}: {exc}"
            graph = None
        if graph is not None:
            from radclip.runtime.batcher import BatcherConfig, MicroBatcher

            state.screen_batcher = MicroBatcher(
                lambda items: _screen_batch(state, graph, items), BatcherConfig(max_batch=16), name="radclip-screen-batcher",
                on_batch=lambda n: state.metrics.batch_size.labels("screen").observe(n),
            )  # fmt: skip
        log.info("/screen path: %s", "one fused graph over the shared trunk" if graph is not None else "two graphs")
    return state
