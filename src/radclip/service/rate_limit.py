"""Per-key token buckets: in Redis when ``RADCLIP_REDIS_URL`` is set (shared by all workers), in-process otherwise.

A bucket holds up to ``capacity`` tokens and refills at ``capacity / period`` tokens a second; a
request takes one. :meth:`RateLimiter.take` returns 0 when allowed, else the seconds until a token
is back (the ``Retry-After`` value).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

# Atomic take in Redis: KEYS[1] bucket; ARGV capacity, refill per s, now (s). Returns ms to wait (0 = taken).
_LUA = """
local b = redis.call('HMGET', KEYS[1], 't', 'at')
local cap, rate, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, at = tonumber(b[1]), tonumber(b[2])
if tokens == nil then tokens, at = cap, now end
tokens = math.min(cap, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 't', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate * 1000) + 1000)
return wait
"""


class RateLimiter:
    """Token buckets keyed by key name, with a (capacity, period) per role; capacity 0 = unlimited."""

    def __init__(
        self,
        limits: dict[str, tuple[float, float]],
        redis_url: str | None = None,
        prefix: str = "radclip:rl:",
    ) -> None:
        self.limits, self.prefix = limits, prefix
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._redis: Any = None
        self._script: Any = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
            self._script = self._redis.register_script(_LUA)

    def take(self, name: str, role: str, now: float | None = None) -> float:
        capacity, period = self.limits.get(role, (0.0, 1.0))
        if capacity <= 0:
            return 0.0
        rate, now = capacity / period, time.time() if now is None else now
        if self._script is not None:
            try:
                return float(self._script(keys=[self.prefix + name], args=[capacity, rate, now])) / 1000
            except Exception as exc:  # Redis down: limit per process rather than refuse every request
                log.warning("rate limit store unreachable, limiting in-process: %s", type(exc).__name__)
        with self._lock:
            tokens, at = self._buckets.get(name, (capacity, now))
            tokens = min(capacity, tokens + max(0.0, now - at) * rate)
            if tokens >= 1:
                self._buckets[name] = (tokens - 1, now)
                return 0.0
            self._buckets[name] = (tokens, now)
            return (1 - tokens) / rate


def retry_after_header(wait_s: float) -> str:
    """Whole seconds, at least 1 (RFC 9110 delay-seconds)."""
    return str(max(1, math.ceil(wait_s)))
