"""Live data drift: the rolling mean of served image embeddings against the reference shipped with the model.

The service feeds every image embedding it computes (``/screen``, ``/similar`` image queries) to
one :class:`DriftMonitor`, built once at start. It keeps the last :data:`DRIFT_WINDOW` embeddings
(:class:`radclip.engine.drift.RollingDrift`) and exports, per image–text model:

* ``radclip_embedding_drift_cosine``: the rolling-mean cosine distance, once the window is full
  (``RadclipEmbeddingDrift`` fires above 0.10);
* ``radclip_embedding_drift_window_fill``: studies in the window / window size;
* ``radclip_embedding_drift_reference_loaded``: 1 when a reference for the loaded weights is in use.

A missing reference, or one made for other weights, is logged and reported on ``/readyz``; then no
drift value is exported and serving is unaffected. Nothing here ever raises into a request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from radclip.engine.drift import COSINE_ALERT, RollingDrift
from radclip.engine.drift_reference import FIX, DriftReference, drift_reference_path, load_drift_reference

log = logging.getLogger(__name__)
DRIFT_WINDOW = (
    25  # studies; the window with the shortest measured delay and no false alarm (docs/operations.md)
)


class DriftMonitor(Collector):
    """Thread-safe rolling drift of one model's image embeddings, and its Prometheus collector."""

    def __init__(
        self, model: str, reference: DriftReference | None, reason: str = "", window: int = DRIFT_WINDOW
    ) -> None:
        self.model, self.reference, self.window = model, reference, window
        self.reason = reason if reference is None else ""  # safe for /readyz: no paths, no exception text
        self._drift = RollingDrift(reference.mean[None, :], window) if reference is not None else None
        self._last: float | None = None
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self._drift is not None

    def observe(self, embeddings: np.ndarray) -> None:
        """Add one (D,) or several (N, D) embeddings; a malformed one switches drift off, never the request."""
        if self._drift is None:
            return
        rows = np.asarray(embeddings, dtype=np.float64).reshape(-1, np.shape(embeddings)[-1])
        try:
            with self._lock:
                if rows.shape[1] != self._drift.reference_mean.shape[0]:
                    raise ValueError(
                        f"embedding has {rows.shape[1]} dims, the drift reference {self._drift.reference_mean.shape[0]}"
                    )
                for row in rows:
                    report = self._drift.update(row)
                    if report is not None:
                        self._last = report.cosine_distance
        except (
            Exception
        ) as exc:  # drift is monitoring only: switch it off and say so rather than fail a request
            log.error("drift monitor for %s switched off: %s", self.model, exc)
            self._drift, self.reason = (
                None,
                f"switched off after an error ({type(exc).__name__}; see the server log)",
            )

    def fill(self) -> int:
        with self._lock:
            return len(self._drift) if self._drift is not None else 0

    def status(self) -> dict[str, Any]:
        """The ``/readyz`` block."""
        if self._drift is None:
            return {"state": "unavailable", "model": self.model, "reason": self.reason}
        n, ref = self.fill(), self.reference
        assert ref is not None
        return {"state": "active" if n >= self.window else "filling", "model": self.model, "window": self.window,
                "studies_in_window": n, "cosine_distance": None if n < self.window else round(float(self._last or 0.0), 6),
                "alert_above": COSINE_ALERT, "reference": {"n": ref.n, "sources": ref.sources, "data_snapshot": ref.data_snapshot}}  # fmt: skip

    def collect(self) -> Iterator[GaugeMetricFamily]:
        loaded = GaugeMetricFamily(
            "radclip_embedding_drift_reference_loaded",
            "1 when a drift reference for the loaded image-text weights is in use",
            labels=["model"],
        )
        loaded.add_metric([self.model], 1.0 if self._drift is not None else 0.0)
        yield loaded
        if self._drift is None:
            return
        n = self.fill()
        fill = GaugeMetricFamily(
            "radclip_embedding_drift_window_fill",
            "Studies in the drift window / window size",
            labels=["model"],
        )
        fill.add_metric([self.model], n / self.window)
        yield fill
        if (
            n >= self.window and self._last is not None
        ):  # no value until the window is full: no alert on 3 studies
            cos = GaugeMetricFamily(
                "radclip_embedding_drift_cosine",
                "Cosine distance between the rolling mean of image embeddings and the reference mean",
                labels=["model"],
            )
            cos.add_metric([self.model], self._last)
            yield cos


def build_drift_monitor(
    model: str, card: Any, registry: Any = None, window: int = DRIFT_WINDOW
) -> DriftMonitor:
    """The monitor of the loaded image–text model (``model``: its name or path; ``card``: its card); never raises."""
    from radclip.models.registry import find_card

    reference, reason = None, ""
    try:
        _, card_file = find_card(model)
        path = drift_reference_path(Path(card_file), card.name)
        if not path.is_file():
            log.warning("no drift reference for %s at %s: drift is not monitored; %s", card.name, path, FIX)
            reason = f"no drift reference is shipped for {card.name}; {FIX}"
        else:
            reference = load_drift_reference(path, card.weights_sha256)
            log.info(
                "drift reference for %s: %d train images (%s), window %d",
                card.name,
                reference.n,
                reference.sources,
                window,
            )
    except (
        Exception
    ) as exc:  # a bad reference must never stop the service: no drift value, the reason on /readyz
        log.warning("drift reference for %s not used: %s", card.name, exc)
        reason = f"the drift reference was refused (made for other weights, or malformed); {FIX}"
    monitor = DriftMonitor(card.name, reference, reason, window)
    if registry is not None:
        registry.register(monitor)
    return monitor
