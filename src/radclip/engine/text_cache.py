"""Text-embedding cache: an in-process LRU in front of Redis, in front of the text model.

Keys carry the text-model version and the sha256 of the text, inside a namespace generation
(``radclip:emb:g<gen>:<version>:<sha>``). :meth:`TextEmbeddingCache.bump_namespace` moves every
process to a new generation (old keys are simply never read again and expire);
:meth:`invalidate_condition` drops the keys recorded under one condition's tag.

Redis is optional. When it stops answering, lookups go straight to the model, the outage is
logged once, and reconnection is retried with exponential backoff; the first success is
logged once too. :meth:`stats` exposes hit/miss counters, hit rate and latencies.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from radclip.engine.encoders import TextEmbedder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheConfig:
    lru_size: int = 4096  # entries kept in process; 0 disables the LRU
    redis_url: str | None = None  # redis://host:port/db; None = in-process only
    prefix: str = "radclip:emb"  # Redis key prefix (namespacing several deployments in one Redis)
    ttl_s: int = 7 * 24 * 3600  # Redis entry lifetime; stale generations age out
    socket_timeout_s: float = 0.25  # per Redis command; a dead server must not stall requests
    backoff_initial_s: float = 0.5  # first wait before trying a lost Redis again
    backoff_max_s: float = 30.0  # cap of the exponential backoff
    generation_poll_s: float = 5.0  # how often to look for a namespace bump made by another process


def text_key_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _RedisLink:
    """A Redis client that fails soft: errors mark it down; it is retried after a backoff."""

    def __init__(self, config: CacheConfig) -> None:
        import redis  # optional dependency, imported only when a URL is configured

        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
        self._client = redis.Redis.from_url(
            config.redis_url,
            socket_timeout=config.socket_timeout_s,
            socket_connect_timeout=config.socket_timeout_s,
            retry_on_timeout=False,
        )
        self._cfg = config
        self.up = True
        self.errors = 0
        self.reconnects = 0
        self._backoff = config.backoff_initial_s
        self._retry_at = 0.0

    def call(self, fn_name: str, *args: Any) -> Any:
        """Run one command; ``None`` when Redis is down (and not yet due for a retry)."""
        return self.run(lambda client: getattr(client, fn_name)(*args))

    def run(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(client)``; ``None`` when Redis is down (and not yet due for a retry)."""
        if not self.up and time.monotonic() < self._retry_at:
            return None
        try:
            out = fn(self._client)
        except self._errors as exc:
            self.errors += 1
            if self.up:
                log.warning("redis text cache unavailable (%s); serving from the model, will retry", exc)
            else:
                self._backoff = min(self._backoff * 2, self._cfg.backoff_max_s)
            self.up = False
            self._retry_at = time.monotonic() + self._backoff
            return None
        if not self.up:
            log.info("redis text cache reconnected")
            self.reconnects += 1
            self.up = True
            self._backoff = self._cfg.backoff_initial_s
        return out

    def set_many(self, mapping: dict[str, bytes], ttl_s: int) -> None:
        def _set(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            for k, v in mapping.items():
                pipe.set(k, v, ex=ttl_s)
            return pipe.execute()

        self.run(_set)


class TextEmbeddingCache:
    """Wraps a :class:`TextEmbedder`; itself satisfies the protocol (``version``, ``dim``, ``encode_text``)."""

    def __init__(self, embedder: TextEmbedder, config: CacheConfig | None = None) -> None:
        self._inner = embedder
        self.config = config or CacheConfig()
        self.version = embedder.version
        self.dim = int(embedder.dim)
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._redis = _RedisLink(self.config) if self.config.redis_url else None
        self._generation = self._read_generation()
        self._next_gen_check = time.monotonic() + self.config.generation_poll_s
        self._local_tags: dict[str, set[str]] = {}
        self._counters = dict(lru_hits=0, redis_hits=0, misses=0, encoder_calls=0, invalidated=0)
        self._lookup_s = 0.0
        self._encode_s = 0.0
        self._lookups = 0

    # -- keys -----------------------------------------------------------------------------
    def _gen_key(self) -> str:
        return f"{self.config.prefix}:generation"

    def _read_generation(self) -> int:
        if self._redis is None:
            return 0
        raw = self._redis.call("get", self._gen_key())
        return int(raw) if raw is not None else 0

    def _maybe_refresh_generation(self) -> None:
        """Follow a namespace bump made by another process (checked every ``generation_poll_s``)."""
        if self._redis is None or time.monotonic() < self._next_gen_check:
            return
        self._next_gen_check = time.monotonic() + self.config.generation_poll_s
        raw = self._redis.call("get", self._gen_key())
        if raw is not None and int(raw) != self._generation:
            self._generation = int(raw)
            with self._lock:
                self._lru.clear()

    def key(self, text: str) -> str:
        return f"{self.config.prefix}:g{self._generation}:{self.version}:{text_key_hash(text)}"

    def _tag_key(self, tag: str) -> str:
        return f"{self.config.prefix}:tag:{self.version}:{tag}"

    # -- the protocol -----------------------------------------------------------------------
    def encode_text(self, texts: list[str], tag: str | None = None) -> np.ndarray:
        """Embeddings for ``texts`` (cache first). ``tag`` (a condition name) records the keys for invalidation."""
        texts = list(texts)
        self._maybe_refresh_generation()
        t0 = time.perf_counter()
        keys = [self.key(t) for t in texts]
        out: list[np.ndarray | None] = [None] * len(texts)
        with self._lock:
            for i, k in enumerate(keys):
                hit = self._lru.get(k)
                if hit is not None:
                    self._lru.move_to_end(k)
                    out[i] = hit
                    self._counters["lru_hits"] += 1
        missing = [i for i, v in enumerate(out) if v is None]
        if missing and self._redis is not None:
            raw = self._redis.call("mget", [keys[i] for i in missing]) or [None] * len(missing)
            for i, blob in zip(missing, raw, strict=True):
                if blob is not None and len(blob) == 4 * self.dim:
                    out[i] = np.frombuffer(blob, dtype=np.float32).copy()
                    self._counters["redis_hits"] += 1
                    self._remember(keys[i], out[i])
        self._lookup_s += time.perf_counter() - t0
        self._lookups += len(texts)
        missing = [i for i, v in enumerate(out) if v is None]
        if missing:
            self._fill_from_model(texts, keys, out, missing)
        if tag is not None:
            self._tag(tag, keys)
        return np.stack(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)

    def _fill_from_model(self, texts: list[str], keys: list[str], out: list, missing: list[int]) -> None:
        # Encode each distinct missing text once, even if repeated in the batch.
        uniq = list(dict.fromkeys(texts[i] for i in missing))
        t0 = time.perf_counter()
        vecs = np.asarray(self._inner.encode_text(uniq), dtype=np.float32)
        self._encode_s += time.perf_counter() - t0
        self._counters["encoder_calls"] += 1
        self._counters["misses"] += len(missing)
        by_text = dict(zip(uniq, vecs, strict=True))
        mapping = {}
        for i in missing:
            out[i] = by_text[texts[i]]
            mapping[keys[i]] = out[i].tobytes()
            self._remember(keys[i], out[i])
        if self._redis is not None:
            self._redis.set_many(mapping, self.config.ttl_s)

    def _remember(self, key: str, vec: np.ndarray) -> None:
        if self.config.lru_size <= 0:
            return
        with self._lock:
            self._lru[key] = vec
            self._lru.move_to_end(key)
            while len(self._lru) > self.config.lru_size:
                self._lru.popitem(last=False)

    def _tag(self, tag: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        self._local_tags.setdefault(tag, set()).update(keys)
        if self._redis is not None and keys:
            self._redis.call("sadd", self._tag_key(tag), *keys)

    # -- invalidation ----------------------------------------------------------------------
    def invalidate_condition(self, tag: str) -> int:
        """Drop every cached embedding recorded under ``tag``; returns how many keys were dropped."""
        keys = set(self._local_tags.pop(tag, set()))
        if self._redis is not None:
            members = self._redis.call("smembers", self._tag_key(tag)) or set()
            keys |= {m.decode() if isinstance(m, bytes) else m for m in members}
            if keys:
                self._redis.call("delete", *keys, self._tag_key(tag))
        with self._lock:
            for k in keys:
                self._lru.pop(k, None)
        self._counters["invalidated"] += len(keys)
        return len(keys)

    def bump_namespace(self) -> int:
        """Start a new key generation (every process sharing the Redis follows); returns it."""
        new = self._redis.call("incr", self._gen_key()) if self._redis is not None else None
        self._generation = int(new) if new is not None else self._generation + 1
        with self._lock:
            self._lru.clear()
        self._local_tags.clear()
        return self._generation

    def clear_local(self) -> None:
        with self._lock:
            self._lru.clear()

    # -- observability ---------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        c = dict(self._counters)
        lookups = c["lru_hits"] + c["redis_hits"] + c["misses"]
        c.update(
            lookups=lookups,
            hit_rate=(c["lru_hits"] + c["redis_hits"]) / lookups if lookups else 0.0,
            lru_entries=len(self._lru),
            generation=self._generation,
            text_version=self.version,
            redis_configured=self._redis is not None,
            redis_up=bool(self._redis and self._redis.up),
            redis_errors=self._redis.errors if self._redis else 0,
            redis_reconnects=self._redis.reconnects if self._redis else 0,
            lookup_ms_mean=1000 * self._lookup_s / self._lookups if self._lookups else 0.0,
            encode_ms_total=1000 * self._encode_s,
        )
        return c
