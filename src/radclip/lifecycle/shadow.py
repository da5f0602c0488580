"""Off the request path: run the shadow version on the same study and log both predictions, keyed by study.

The request hands the decoded tensor and its answer to :meth:`ShadowWorker.submit` and returns; one
daemon thread does the rest. Nothing here can reach a response: a full queue drops the job (counted),
and a shadow or logging failure is counted and logged, never raised. When more than one version
scored the study, each version's class activation maps (the answer's from the request's own pass)
and a thumbnail go to the review store, for the discordance review's heat maps.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from radclip.engine.served_predictions import Prediction, PredictionLog
from radclip.lifecycle.review_store import ReviewStore, version_maps
from radclip.lifecycle.routing import Choice

log = logging.getLogger(__name__)
QUEUE_MAX = 64  # beyond this the shadow falls behind production; drop rather than hold memory


def _scores(result: Any) -> dict[str, float]:
    return {name: round(float(p), 6) for name, p in zip(result.labels, result.probs, strict=True)}


def _split(ref: str) -> tuple[str, str]:
    name, _, version = ref.partition("@")
    return name, version


class ShadowWorker:
    """One thread: shadow inference and the prediction log. ``outcomes`` counts ok / failed / dropped jobs."""

    def __init__(
        self, predictions: PredictionLog, registry: Any | None = None, review: ReviewStore | None = None
    ) -> None:
        self.predictions = predictions
        self.review = review  # heat maps of studies scored by more than one version (None: not kept)
        self._queue: queue.Queue[tuple[Choice, Any, Any] | None] = queue.Queue(QUEUE_MAX)
        self.outcomes = {"ok": 0, "failed": 0, "dropped": 0}
        self._counter = None
        if registry is not None:
            from prometheus_client import Counter

            self._counter = Counter(
                "radclip_shadow_jobs", "Shadow/prediction-log jobs by outcome", ["outcome"], registry=registry
            )
        self._thread = threading.Thread(target=self._loop, name="radclip-shadow", daemon=True)
        self._thread.start()

    def submit(self, choice: Choice, contract: Any, answer_result: Any) -> None:
        """Queue the job and return at once; never raises."""
        try:
            self._queue.put_nowait((choice, contract, answer_result))
        except queue.Full:
            self._count("dropped")

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] += 1
        if self._counter is not None:
            self._counter.labels(outcome).inc()

    def _loop(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                self._run(*job)
                self._count("ok")
            except Exception as exc:  # a shadow failure is an operations signal, never a response
                log.warning("shadow job for %s failed: %s", job[0].study_key, exc)
                self._count("failed")
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _run(self, choice: Choice, contract: Any, answer_result: Any) -> None:
        answered = Prediction(
            choice.study_key, *_split(choice.answer.ref), choice.answer.stage, _scores(answer_result)
        )
        rows, scored = [answered], [(choice.answer, answer_result)]
        try:
            # Each version's role is its stage at serve time; a canary-answered study gets production's
            # scores too, so the live AUC comparison is paired on the same studies.
            extra = [
                x for x in (choice.production, choice.shadow) if x is not None and x.ref != choice.answer.ref
            ]
            for served in extra:
                result = served.runner.run(contract)
                scored.append((served, result))
                rows.append(Prediction(choice.study_key, *_split(served.ref), served.stage, _scores(result)))
        finally:  # the answer's prediction is logged even when a shadow run fails
            self.predictions.record(rows)
        if self.review is not None and len(scored) > 1:
            size = self.review.config.map_size
            maps = {s.ref: version_maps(s.runner, r, size) for s, r in scored}
            self.review.save(choice.study_key, contract[0], maps, answer_result.labels)

    def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until every queued job is done (tests, shutdown)."""
        done = threading.Event()
        threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True).start()
        done.wait(timeout_s)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
