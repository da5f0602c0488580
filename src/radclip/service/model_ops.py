"""The service's model operations: the lifecycle (which version answers) and the shadow worker, built in lifespan."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class ModelOps:
    lifecycle: Any  # radclip.lifecycle.deployment.ModelLifecycle
    shadow: Any  # radclip.lifecycle.shadow.ShadowWorker
    feedback: Any  # radclip.engine.feedback.FeedbackStore
    monitor: Any  # radclip.lifecycle.feedback_monitor.FeedbackMonitor

    def close(self) -> None:
        self.shadow.close()


def build_model_ops(settings: Any, state: Any, engine: Any) -> ModelOps | None:
    """None when no triage model is loaded (then /screen answers 503 anyway) or the registry cannot be read."""
    if state.triage is None:
        return None
    from radclip.engine.feedback import FeedbackStore
    from radclip.engine.served_predictions import PredictionLog
    from radclip.lifecycle.deployment import build_lifecycle
    from radclip.lifecycle.feedback_monitor import FeedbackMonitor
    from radclip.lifecycle.review_store import ReviewStore
    from radclip.lifecycle.shadow import ShadowWorker

    try:
        lifecycle = build_lifecycle(settings, state.triage, engine)
    except Exception as exc:  # the configured model still answers; /api/v1/models reports 503 with this
        log.error("model lifecycle not started, serving the configured triage model only: %s", exc)
        state.load_errors["lifecycle"] = f"{type(exc).__name__}: {exc}"
        return None
    predictions, feedback = PredictionLog(engine), FeedbackStore(engine)
    monitor = FeedbackMonitor(lifecycle, feedback, predictions, state.metrics.registry)
    worker = ShadowWorker(predictions, state.metrics.registry, ReviewStore.for_home(settings.home))
    return ModelOps(lifecycle, worker, feedback, monitor)


def get_model_ops(request: Any) -> ModelOps | None:
    return getattr(request.app.state, "radclip_ops", None)
