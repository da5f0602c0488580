"""Prometheus metrics, one registry per app (so tests can build many apps in one process)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_latency = Histogram("radclip_request_seconds", "Request latency per endpoint", ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r)
        self.requests = Counter("radclip_requests", "Requests per endpoint and status class", ["endpoint", "status"], registry=r)
        self.inference = Histogram("radclip_inference_seconds", "Model inference time per model", ["model", "backend"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("radclip_batch_size", "Image micro-batch sizes", ["model"], buckets=(1, 2, 4, 8, 16), registry=r)
        self.cache_hit_rate = Gauge("radclip_text_cache_hit_rate", "Text-embedding cache hit rate", registry=r)
        self.index_size = Gauge("radclip_index_size", "Studies in the retrieval index", registry=r)
        self.index_state = Gauge("radclip_index_state", "Retrieval index state (1 = this state)", ["state"], registry=r)
        self.top_similarity = Histogram(
            "radclip_top_finding_similarity", "Cosine similarity of the top screening finding",
            buckets=tuple(x / 20 for x in range(-4, 21)), registry=r,
        )
        self.model_info = Gauge("radclip_model_info", "Loaded models (value 1)", ["role", "name", "version", "backend"], registry=r)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
