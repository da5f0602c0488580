"""Text-embedding cache: LRU, a real Redis shared by two processes' caches, invalidation, outage."""

from __future__ import annotations

import logging
import time

import numpy as np
import redis
from engine_fakes import HashingTextEmbedder

from radclip.engine.registry import PromptRegistry
from radclip.engine.text_cache import CacheConfig, TextEmbeddingCache


def test_lru_hits_and_eviction() -> None:
    inner = HashingTextEmbedder()
    cache = TextEmbeddingCache(inner, CacheConfig(lru_size=2))
    a = cache.encode_text(["pleural effusion", "pneumothorax"])
    b = cache.encode_text(["pleural effusion", "pneumothorax"])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, inner.encode_text(["pleural effusion", "pneumothorax"]), atol=0)
    s = cache.stats()
    assert (s["lru_hits"], s["misses"], s["encoder_calls"], s["hit_rate"]) == (2, 2, 1, 0.5)
    cache.encode_text(["cardiomegaly"])  # evicts "pleural effusion" (least recently used)
    cache.encode_text(["pleural effusion"])
    s = cache.stats()
    assert (s["lru_hits"], s["misses"], s["lru_entries"]) == (2, 4, 2)
    cache.encode_text(["x ray", "x ray"])  # a repeated miss inside one batch is encoded once
    assert inner.texts_encoded == 2 + 1 + 1 + 1 + 2


def test_redis_shared_across_caches_and_versioned(redis_url: str) -> None:
    first = TextEmbeddingCache(HashingTextEmbedder(), CacheConfig(redis_url=redis_url))
    first.encode_text(["rib fracture", "clavicle fracture"])
    second_inner = HashingTextEmbedder()
    second = TextEmbeddingCache(second_inner, CacheConfig(redis_url=redis_url))
    out = second.encode_text(["rib fracture", "clavicle fracture"])
    assert second_inner.calls == 0 and second.stats()["redis_hits"] == 2
    np.testing.assert_allclose(out, first.encode_text(["rib fracture", "clavicle fracture"]), atol=0)
    other_version = TextEmbeddingCache(HashingTextEmbedder(version="fake-text@2"), CacheConfig(redis_url=redis_url))
    other_version.encode_text(["rib fracture"])
    assert other_version.stats()["misses"] == 1  # keys carry the text-model version
    keys = redis.Redis.from_url(redis_url).keys("radclip:emb:g0:fake-text@1:*")
    assert len(keys) == 2


def test_invalidation_per_condition_and_namespace(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    inner = HashingTextEmbedder()
    cache = TextEmbeddingCache(inner, CacheConfig(redis_url=redis_url))
    cache.encode_text(["ett low", "ett in bronchus"], tag="ett_right_main_bronchus")
    cache.encode_text(["ngt coiled"], tag="ngt_coiled_oesophagus")
    assert cache.invalidate_condition("ett_right_main_bronchus") == 2
    assert len(r.keys("radclip:emb:g0:*")) == 1
    cache.encode_text(["ett low"])
    cache.encode_text(["ngt coiled"])
    assert (cache.stats()["misses"], cache.stats()["lru_hits"]) == (4, 1)
    gen = cache.bump_namespace()
    assert gen == 1 and int(r.get("radclip:emb:generation")) == 1
    follower = TextEmbeddingCache(HashingTextEmbedder(), CacheConfig(redis_url=redis_url))
    assert follower.stats()["generation"] == 1
    cache.encode_text(["ngt coiled"])
    assert cache.stats()["misses"] == 5  # the old generation is never read again


def test_registry_update_invalidates_condition_cache(redis_url: str, sqlite_url: str) -> None:
    inner = HashingTextEmbedder()
    cache = TextEmbeddingCache(inner, CacheConfig(redis_url=redis_url))
    reg = PromptRegistry(sqlite_url, cache)
    reg.register("bullae", ["giant bulla", "bullous disease"], category="airway")
    assert cache.stats()["invalidated"] == 0
    reg.register("bullae", ["giant bulla", "thin-walled bulla"], category="airway")
    assert cache.stats()["invalidated"] == 2 and inner.texts_encoded == 4


def test_redis_outage_logged_once_then_reconnects(own_redis, caplog) -> None:
    inner = HashingTextEmbedder()
    cfg = CacheConfig(redis_url=own_redis.url, lru_size=0, backoff_initial_s=0.2, backoff_max_s=0.4)
    cache = TextEmbeddingCache(inner, cfg)
    want = cache.encode_text(["hydropneumothorax"])
    own_redis.stop()  # kill the real server mid-run
    with caplog.at_level(logging.WARNING, logger="radclip.engine.text_cache"):
        for _ in range(20):
            np.testing.assert_allclose(cache.encode_text(["hydropneumothorax"]), want, atol=0)
    assert sum("unavailable" in r.message for r in caplog.records) == 1
    s = cache.stats()
    assert s["redis_up"] is False and s["redis_errors"] >= 1 and inner.calls == 21
    own_redis.start()  # same port, empty
    deadline = time.monotonic() + 5
    while not cache.stats()["redis_up"] and time.monotonic() < deadline:
        cache.encode_text(["hydropneumothorax"])
        time.sleep(0.1)
    assert cache.stats()["redis_up"] and cache.stats()["redis_reconnects"] == 1
    cache.encode_text(["tension pneumothorax"])  # written to the restarted Redis ...
    fresh_inner = HashingTextEmbedder()
    TextEmbeddingCache(fresh_inner, cfg).encode_text(["tension pneumothorax"])
    assert fresh_inner.calls == 0  # ... and served from it to a new cache
