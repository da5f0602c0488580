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
