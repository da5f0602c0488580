"""The micro-batcher groups concurrent calls, keeps results in order, and isolates errors."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from radclip.runtime.batcher import BatcherConfig, MicroBatcher


def test_concurrent_calls_are_batched_and_results_routed() -> None:
    sizes: list[int] = []
    gate = threading.Event()

    def fn(items):  # type: ignore[no-untyped-def]
        gate.wait(5)  # hold the first batch so the rest queue up
        return [x * 10 for x in items]

    b = MicroBatcher(fn, BatcherConfig(max_batch=16, max_wait_ms=50), on_batch=sizes.append)
    with ThreadPoolExecutor(32) as pool:
        futs = [pool.submit(b, i) for i in range(40)]
        gate.set()
        results = [f.result() for f in futs]
    b.close()
    assert results == [i * 10 for i in range(40)]
    assert sum(sizes) == 40
    assert max(sizes) <= 16
    assert len(sizes) < 40  # at least some batching happened


def test_error_reaches_every_caller_of_that_batch_only() -> None:
    def fn(items):  # type: ignore[no-untyped-def]
        if any(x < 0 for x in items):
            raise ValueError("negative")
        return list(items)

    b = MicroBatcher(fn, BatcherConfig(max_batch=1, max_wait_ms=0))
    with pytest.raises(ValueError, match="negative"):
        b(-1)
    assert b(3) == 3
    b.close()
    with pytest.raises(RuntimeError, match="closed"):
        b.submit(1)


def test_default_batcher_never_waits_for_a_lone_item_but_batches_a_queue() -> None:
    """Greedy default: a lone call runs at once; calls queued while a batch runs become the next batch."""
    import time

    sizes: list[int] = []
    running, release = threading.Event(), threading.Event()

    def fn(items):  # type: ignore[no-untyped-def]
        running.set()
        release.wait(5)
        return list(items)

    b = MicroBatcher(fn, on_batch=sizes.append)  # default config
    assert b.config.max_wait_ms == 0
    release.set()
    t0 = time.perf_counter()
    assert b(1) == 1
    assert time.perf_counter() - t0 < 0.5 and sizes == [1]
    release.clear()
    running.clear()
    first = b.submit(0)
    assert running.wait(5)  # the worker is busy with [0] ...
    queued = [b.submit(i) for i in range(1, 6)]  # ... so these five wait in the queue
    release.set()
    assert first.result(5) == 0 and [f.result(5) for f in queued] == [1, 2, 3, 4, 5]
    b.close()
    assert sizes == [1, 1, 5]
