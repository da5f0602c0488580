"""The micro-batcher groups concurrent calls, keeps results in order, and isolates errors."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from radclip.runtime.batcher import BatcherConfig, MicroBatcher


def test_concurrent_calls_are_batched_and_results_routed() -> None:
    """40 calls submitted from 32 threads while the worker is busy form batches of 16, 16 and 8, in order."""
    sizes: list[int] = []
    running, release = threading.Event(), threading.Event()

    def fn(items):  # type: ignore[no-untyped-def]
        running.set()
        release.wait(30)  # hold the first batch so the rest queue up
        return [x * 10 for x in items]

    b = MicroBatcher(fn, BatcherConfig(max_batch=16, max_wait_ms=0), on_batch=sizes.append)
    first = b.submit(-1)
    assert running.wait(30)  # the worker holds [-1] ...
    with ThreadPoolExecutor(32) as pool:
        futs = list(pool.map(b.submit, range(40)))  # ... while 32 threads queue 40 calls
    release.set()
    results = [f.result(30) for f in futs]
    b.close()
    assert first.result(30) == -10 and results == [i * 10 for i in range(40)]
    assert sizes == [1, 16, 16, 8]


def test_positive_wait_holds_the_first_item_until_the_batch_is_full() -> None:
    sizes: list[int] = []
    b = MicroBatcher(
        lambda items: list(items), BatcherConfig(max_batch=4, max_wait_ms=600_000), on_batch=sizes.append
    )
    futs = [b.submit(i) for i in range(6)]  # a 10-minute wait: only a full batch releases the first four
    assert [f.result(30) for f in futs[:4]] == [0, 1, 2, 3]
    b.close()  # the close sentinel ends the wait of the last two
    assert [f.result(30) for f in futs[4:]] == [4, 5] and sizes == [4, 2]


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
    sizes: list[int] = []
    running, release = threading.Event(), threading.Event()

    def fn(items):  # type: ignore[no-untyped-def]
        running.set()
        release.wait(5)
        return list(items)

    b = MicroBatcher(fn, on_batch=sizes.append)  # default config
    assert b.config.max_wait_ms == 0
    release.set()
    assert b(1) == 1 and sizes == [1]  # alone: a batch of one
    release.clear()
    running.clear()
    first = b.submit(0)
    assert running.wait(5)  # the worker is busy with [0] ...
    queued = [b.submit(i) for i in range(1, 6)]  # ... so these five wait in the queue
    release.set()
    assert first.result(5) == 0 and [f.result(5) for f in queued] == [1, 2, 3, 4, 5]
    b.close()
    assert sizes == [1, 1, 5]
