"""Dynamic batching: requests that arrive together are answered by one generation call with per-sample
adapters, so throughput grows with concurrency.

One thread owns the model: the batcher's own (`start`), or the caller's (`run`; `mllmcl serve` runs it on
the main thread, where torch's CPU thread pool serves it best: docs/serving.md). It takes every request
waiting (up to `max_batch`) and, until as many requests have arrived since the previous batch ended as that
batch answered (those clients send their next requests now), waits up to `max_wait` seconds for more; then
it routes the batch and answers it with `RoutedModel.answer_queries` (each query with its own expert or the
base model, and its own token limit) in one call, where each row leaves the decoding batch once it has ended
(`engine/generate.py`). A batch that fails is retried one request at a time, so a request that breaks
generation fails alone. While requests keep coming, the thread holds an `inference_session` on the backbone,
so the setup of an inference call (disabling the adapters, hooking the experts' layers) is paid once per
busy spell, not twice per batch; it lets go whenever the queue runs dry.
Swapping in a new version (`swap`) runs in the same thread between two batches: the batch in flight
finishes on the old version, every later one uses the new one, and no request is dropped. `stop` answers
what is queued; a request that comes after it gets `ShuttingDown`."""
from __future__ import annotations

import queue
import sys
import threading
import time
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Callable

from mllmcl.data.records import Query
from mllmcl.engine.generate import inference_session
from mllmcl.serve.routed import RoutedModel


class ShuttingDown(RuntimeError):
    """The server stopped before it answered this request."""


@dataclass
class Job:
    query: Query
    model: str
    max_tokens: int
    future: Future
    queued: float = field(default_factory=time.monotonic)
    route_only: bool = False  # pick the expert, answer nothing (an upstream engine answers)


@dataclass
class Done:
    """What a request gets back: the answer, the expert that gave it ("base" for the base model), the
    router's confidence, token counts, whether it stopped by itself, and the library version."""

    text: str
    expert: str
    confidence: float
    prompt_tokens: int
    completion_tokens: int
    stopped: bool
    version: int | None


@dataclass
class _Swap:
    load: Callable[[RoutedModel], RoutedModel]
    future: Future


_STOP = object()


class Batcher:
    def __init__(self, model: RoutedModel, max_batch: int = 32, max_wait: float = 0.1):
        self.model = model
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.batches = 0
        self.answered = 0
        self.busy = 0.0  # seconds spent computing batches: against wall time, how much the worker waited
        self._last_size, self._finished = 0, 0.0
        self._queue: queue.Queue = queue.Queue()
        self._session: ExitStack | None = None
        self._closing = threading.RLock()  # stop() may run in a signal handler that interrupted stop()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="mllmcl-batcher", daemon=True)

    def start(self) -> "Batcher":
        """Answer on a thread of the batcher's own."""
        self._thread.start()
        return self

    def run(self) -> None:
        """Answer on the calling thread until `stop` (instead of `start`)."""
        self._loop()

    def stop(self) -> None:
        """Answer what is queued, then stop; requests that come later get `ShuttingDown`."""
        with self._closing:
            if not self._stopped:
                self._stopped = True
                self._queue.put(_STOP)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def submit(self, query: Query, model: str, max_tokens: int, route_only: bool = False) -> Future:
        """Queue one request; the future gives its `Done` (with `route_only`: the expert alone, no text)."""
        return self._put(Job(query, model, max_tokens, Future(), route_only=route_only))

    def swap(self, load: Callable[[RoutedModel], RoutedModel]) -> Future:
        """Replace the model by `load(current)` between two batches; the future gives the new model."""
        return self._put(_Swap(load, Future()))

    def _put(self, item: "Job | _Swap") -> Future:
        with self._closing:
            if self._stopped:
                item.future.set_exception(ShuttingDown("the server is shutting down"))
            else:
                self._queue.put(item)
        return item.future

    # -- the worker
    def _loop(self) -> None:
        pending = None
        while True:
            item = pending if pending is not None else self._queue.get()
            pending = None
            if item is _STOP:  # the last item: `_put` queues nothing after it
                self._let_go()
                return
            if isinstance(item, _Swap):
                self._let_go()
                self._swap(item)
                continue
            batch = [item]
            # the clients the last batch answered are about to send their next requests: wait for them (up
            # to max_wait) to fill this batch; once as many have arrived, take only what is already queued
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                back = sum(job.queued >= self._finished for job in batch)
                timeout = 0.0 if back >= self._last_size else max(0.0, deadline - time.monotonic())
                try:
                    nxt = self._queue.get(timeout=timeout)
                except queue.Empty:
                    break
                if not isinstance(nxt, Job):
                    pending = nxt  # a swap or stop waits for this batch
                    break
                batch.append(nxt)
            self._answer(batch)

    def _answer(self, batch: list[Job]) -> None:
        batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not batch:
            return
        model = self.model
        started = time.monotonic()
        try:
            if self._session is None:
                self._session = ExitStack()
                self._session.enter_context(inference_session(model.backbone))
            done = self._work(model, batch)
        except Exception as err:  # noqa: BLE001 - one bad request must not fail the others
            if len(batch) == 1:
                self._let_go_if_idle()
                batch[0].future.set_exception(err)
                return
            for job in batch:
                retry = Future()
                self._answer([replace(job, future=retry)])
                _forward(retry, job.future)
            return
        self.batches += 1
        self.answered += len(batch)
        self.busy += time.monotonic() - started
        self._last_size, self._finished = len(batch), time.monotonic()  # before any client hears back
        self._let_go_if_idle()
        for job, result in zip(batch, done):
            job.future.set_result(result)

    def _let_go_if_idle(self) -> None:
        """With nothing queued, leave the backbone as a caller outside the server expects it, before anyone
        hears back (a test, say, that then calls the model itself)."""
        if self._queue.empty():
            self._let_go()

    def _let_go(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _work(self, model: RoutedModel, batch: list[Job]) -> list[Done]:
        """Route the batch in one pass; answer its jobs that are not route-only in one call."""
        routes = model.route_queries([job.query for job in batch], [job.model for job in batch])
        out = [Done("", expert, confidence, 0, 0, True, model.version)
               for expert, confidence in zip(routes.experts, routes.confidence)]
        rows = [k for k, job in enumerate(batch) if not job.route_only]
        if rows:
            result = model.answer_queries([batch[k].query for k in rows], [batch[k].max_tokens for k in rows],
                                          [routes.experts[k] for k in rows])
            for k, g in zip(rows, result.generations):
                out[k] = Done(g.text, routes.experts[k], routes.confidence[k], g.prompt_tokens,
                              g.completion_tokens, g.stopped, model.version)
        return out

    def _swap(self, item: _Swap) -> None:
        if not item.future.set_running_or_notify_cancel():
            return
        try:
            new = item.load(self.model)
        except Exception as err:  # noqa: BLE001 - a bad version must not stop the server
            print(f"mllmcl serve: reload failed, still serving version {self.model.version}: {err}", file=sys.stderr)
            item.future.set_exception(err)
            return
        old, self.model = self.model, new
        if old is not new:
            old.release(keep=new)
        item.future.set_result(new)


def _forward(source: Future, target: Future) -> None:
    if source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())


__all__ = ["Batcher", "Done", "Job", "ShuttingDown"]
