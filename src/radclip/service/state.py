"""What the service holds while it runs: one instance of each model, the engine, metrics.

``build_state`` is called once by the app's lifespan. Components that fail to load are
reported by ``/readyz`` with the reason instead of crashing the process, so triage keeps
answering when, say, the retrieval corpus is missing.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from radclip.service.metrics import ServiceMetrics
from radclip.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ServiceState:
    settings: Settings
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    triage: Any | None = None  # radclip.runtime.triage_runner.TriageRunner
    clip: Any | None = None  # radclip.runtime.clip_runner.ClipRunner
    load_errors: dict[str, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start_background(self) -> None:
        """Start background work (corpus indexing); returns at once."""

    def stop_background(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        self._threads.clear()

    def close(self) -> None:
        """Release resources (database connections)."""

    def model_versions(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.triage is not None:
            out["triage"] = self.triage.version_info()
        if self.clip is not None:
            out["clip"] = self.clip.version_info()
        return out

    def readiness(self) -> dict[str, Any]:
        ready = self.triage is not None
        return {
            "status": "ready" if ready else "degraded",
            "models": self.model_versions(),
            "load_errors": self.load_errors,
        }


def build_state(settings: Settings) -> ServiceState:
    """Load each model once. Failures are recorded, not raised, so the service can still start."""
    state = ServiceState(settings=settings)
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    try:
        from radclip.runtime.triage_runner import TriageRunner

        state.triage = TriageRunner.load(settings.triage_model)
        state.metrics.model_info.labels("triage", state.triage.card.name, state.triage.card.version, state.triage.backend).set(1)
    except Exception as exc:  # reported on /readyz; triage routes answer 503 with the reason
        log.error("triage model %r not loaded: %s", settings.triage_model, exc)
        state.load_errors["triage"] = str(exc)
    return state
