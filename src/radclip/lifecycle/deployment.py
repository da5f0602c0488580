"""``ModelLifecycle``: owns "which model answers this study", following the registry's stages while the service runs.

The request path calls :meth:`ModelLifecycle.choose` once per request. It reads the current
:class:`~radclip.lifecycle.routing.Deployment` snapshot; at most every ``poll_s`` one request checks the
registry's state token and, when it moved, a new snapshot is built (new versions loaded, under a lock,
outside any request's view) and swapped in whole. The admin API calls :meth:`refresh` right after a
change, so in this process a change is in effect when the API answers; other processes follow within
``poll_s``. Loaded runners are cached by sha256, so a version is loaded once however often it moves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from radclip.engine.model_stages import ModelStages, VersionInfo
from radclip.lifecycle.routing import Choice, Deployment, Served

log = logging.getLogger(__name__)
POLL_S = 1.0  # how stale another process's stage change may be here; one indexed query per second at most


def load_triage_version(info: VersionInfo, device: str = "cpu") -> Any:
    """A PyTorch TriageRunner for a registered version on ``device``; the card's sha256 check refuses altered weights."""
    from radclip.runtime.triage_runner import TriageRunner

    return TriageRunner.load(info.path, device=device)


class ModelLifecycle:
    """Follow the stages of one model name and answer each study with production or the canary."""

    def __init__(self, stages: ModelStages, name: str, configured: Any, configured_sha: str | None,
                 loader: Callable[[VersionInfo], Any] = load_triage_version, poll_s: float = POLL_S) -> None:  # fmt: skip
        self.stages, self.name, self.loader, self.poll_s = stages, name, loader, poll_s
        self._runners: dict[str, Any] = {configured_sha: configured} if configured_sha else {}
        self._configured = configured
        self._lock = threading.Lock()  # one rebuild at a time; readers never take it
        self._checked = 0.0
        self._snapshot = Deployment(Served(self._ref_of(configured), "production", configured))
        self.refresh()

    @staticmethod
    def _ref_of(runner: Any) -> str:
        card = runner.card
        return f"{card.name}@{card.version}"

    @property
    def deployment(self) -> Deployment:
        return self._snapshot

    def choose(self, study_key: str) -> Choice:
        """The one per-request decision; never raises (a failed refresh keeps the last good snapshot)."""
        now = time.monotonic()
        if now - self._checked >= self.poll_s:
            self._checked = now
            try:
                if self.stages.state_token() != self._snapshot.token:
                    self.refresh()
            except Exception as exc:  # the registry being unreachable must not fail a study
                log.warning("model registry not read, serving the last deployment: %s", exc)
        return self._snapshot.choose(study_key)

    def runner_for(self, info: VersionInfo) -> Any:
        """Load (once) and return the runner of ``info``; raises what loading raised."""
        with self._lock:
            return self._runner_locked(info)

    def _runner_locked(self, info: VersionInfo) -> Any:
        if info.sha256 not in self._runners:
            self._runners[info.sha256] = self.loader(info)
        return self._runners[info.sha256]

    def refresh(self) -> Deployment:
        """Rebuild the snapshot from the registry and swap it in; a version that fails to load is left out."""
        with self._lock:
            token = self.stages.state_token()
            serving = self.stages.serving(self.name)
            errors: dict[str, str] = {}
            loaded: dict[str, Served] = {}
            for stage, info in serving.items():
                try:
                    loaded[stage] = Served(info.ref, stage, self._runner_locked(info))
                except Exception as exc:  # reported on /api/v1/models; the others keep serving
                    log.error("model %s (%s) not loaded: %s", info.ref, stage, exc)
                    errors[info.ref] = f"{type(exc).__name__}: {exc}"
            production = loaded.get("production") or Served(
                self._ref_of(self._configured), "production", self._configured
            )
            canary = loaded.get("canary")
            percent = float(serving["canary"].canary_percent or 0.0) if canary is not None else 0.0
            self._snapshot = Deployment(production, canary, percent, loaded.get("shadow"), token, errors)
            live = {s.sha256 for s in serving.values()}
            for sha in [
                k for k in self._runners if k not in live and self._runners[k] is not self._configured
            ]:
                del self._runners[
                    sha
                ]  # retired versions free their memory; requests holding one finish with it
            return self._snapshot


def build_lifecycle(settings: Any, configured: Any, engine: Any) -> ModelLifecycle:
    """The lifecycle of the configured triage model; registers it as production when its name has none yet."""
    from radclip.engine.model_stages import StageError
    from radclip.models.registry import find_card
    from radclip.runtime.loading import accelerator_for

    stages = ModelStages(engine)
    card, card_path = find_card(settings.triage_model)
    if "production" not in stages.serving(card.name):
        try:
            stages.register(card_path, "service-start", "production")
        except StageError as exc:  # e.g. this version was registered and retired: the registry decides
            log.warning("configured triage model not registered as production: %s", exc)
    # Registered versions run where the configured model's PyTorch runner would (RADCLIP_DEVICE).
    loader = partial(load_triage_version, device=accelerator_for(settings).device)
    return ModelLifecycle(stages, card.name, configured, card.weights_sha256, loader=loader)
