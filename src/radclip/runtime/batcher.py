"""Micro-batching: concurrent requests for one model are run as one batch.

A worker thread takes the first waiting item plus whatever else is queued (never more than
``max_batch``), calls ``fn`` once on the list, and hands each caller its own result. Model work
thus stays off the event loop, and under load the per-image cost falls with the batch size.

By default nothing waits (``max_wait_ms = 0``): requests that arrive while a batch runs queue up
and form the next batch, so batches grow with load and a lone request pays no timer. A positive
``max_wait_ms`` makes the first item wait that long for company (only worth it when the model's
batch-16 cost is far below 16 single calls and arrivals are steady).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True)
class BatcherConfig:
    max_batch: int = 16  # largest batch handed to the model
    max_wait_ms: float = 0.0  # how long the first item waits for company (0: take only what is queued)


class MicroBatcher(Generic[In, Out]):
    def __init__(self, fn: Callable[[Sequence[In]], Sequence[Out]], config: BatcherConfig | None = None,
                 name: str = "batcher", on_batch: Callable[[int], None] | None = None) -> None:
        self.fn = fn
        self.config = config or BatcherConfig()
        if self.config.max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.on_batch = on_batch  # called with each batch size (metrics)
        self._queue: queue.Queue[tuple[In, Future[Out]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, item: In) -> Future[Out]:
        if self._closed:
            raise RuntimeError("batcher is closed")
        fut: Future[Out] = Future()
        self._queue.put((item, fut))
        return fut

    def __call__(self, item: In, timeout: float | None = 120.0) -> Out:
        return self.submit(item).result(timeout=timeout)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=10)

    def _collect(self, first: tuple[In, Future[Out]]) -> tuple[list[tuple[In, Future[Out]]], bool]:
        batch, stop = [first], False
        deadline = time.monotonic() + self.config.max_wait_ms / 1000
        while len(batch) < self.config.max_batch:
            remaining = deadline - time.monotonic()
            try:
                nxt = self._queue.get(timeout=max(remaining, 0)) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                stop = True
                break
            batch.append(nxt)
        return batch, stop

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._collect(first)
            items = [b[0] for b in batch]
            try:
                results = self.fn(items)
                if len(results) != len(items):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(items)} items")
                for (_, fut), res in zip(batch, results, strict=True):
                    fut.set_result(res)
            except BaseException as exc:  # every waiting caller gets the error, the worker lives on
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
            if self.on_batch is not None:
                self.on_batch(len(items))
            if stop:
                return
