"""Dynamic batching across concurrent requests.

Requests are queued on the event loop (``submit``, non-blocking, bounded) and one worker thread forms
batches: it takes the oldest request, then waits up to ``max_wait_s`` after that request arrived for
others, until ``max_batch_size`` inputs are queued. A request is never split across batches. The
worker tokenizes, runs the backend and formats each request's results off the event loop, then hands
all of the batch's results back to the loop in one callback.

Inference runs through the same Predictor methods as ``acceltune predict`` (encode, batches, pad,
backend.logits, format_result), so a request's results equal ``Predictor.predict`` on its inputs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from acceltune.inference.predictor import Predictor
    from acceltune.serve.metrics import Metrics

log = logging.getLogger("acceltune.serve")


def lower_thread_priority(increment: int) -> None:
    """Raise the calling thread's nice value by `increment` (Linux: nice is per thread, and threads it starts
    later, such as ONNX Runtime's or OpenMP's pool, inherit it). Inference then yields the CPU to the event
    loop, so the loop answers (and refuses) requests promptly while the model computes. No-op elsewhere."""
    if increment <= 0 or not sys.platform.startswith("linux"):  # elsewhere a thread id is not a PRIO_PROCESS target
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except OSError:
        log.warning("could not lower the inference threads' priority")


class QueueFull(Exception):
    """The queue holds max_queue inputs already."""


class Draining(Exception):
    """The server is shutting down and accepts no new work."""


class RequestTimeout(Exception):
    """The request was not answered within its timeout."""


class InputTooLong(Exception):
    """An input exceeds the model's maximum tokens and the request asked not to truncate."""

    def __init__(self, index: int, max_length: int):
        super().__init__(f"inputs[{index}] is longer than the model's maximum of {max_length} tokens "
                         "(send \"truncate\": true to classify its first tokens)")
        self.index, self.max_length = index, max_length


class InferenceFailed(Exception):
    """The backend raised while running the batch this request was in."""


@dataclass(eq=False, slots=True)
class Job:
    texts: list[str]
    pairs: list[str] | None
    top_k: int
    truncate: bool
    future: asyncio.Future
    enqueued: float
    timer: asyncio.TimerHandle | None
    abandoned: bool


class Batcher:
    def __init__(self, predictor: "Predictor", max_batch_size: int = 64, max_wait_s: float = 0.002,
                 max_queue: int = 256, metrics: "Metrics | None" = None, nice: int = 0):
        self.predictor = predictor
        self.nice = nice
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.metrics = metrics
        self._queue: deque[Job] = deque()
        self._queued_inputs = 0
        self._cond = threading.Condition(threading.Lock())
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- event-loop side -------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="acceltune-batcher", daemon=True)
        self._thread.start()

    @property
    def queued_inputs(self) -> int:
        return self._queued_inputs

    @property
    def closing(self) -> bool:
        return self._closing

    def submit(self, texts: list[str], pairs: list[str] | None = None, top_k: int = 1, truncate: bool = True,
               timeout_s: float | None = None) -> asyncio.Future:
        """Queue one request; the future resolves to its list of result dicts (or a Batcher exception).

        Never blocks: raises QueueFull or Draining at once when the request cannot be queued.
        """
        loop = self._loop
        future = loop.create_future()
        n = len(texts)
        job = Job(texts, pairs, top_k, truncate, future, time.perf_counter(), None, False)
        with self._cond:
            if self._closing:
                raise Draining()
            if self._queued_inputs + n > self.max_queue:
                raise QueueFull()
            was_empty = not self._queue
            self._queue.append(job)
            self._queued_inputs += n
            # Wake the worker only when it can act: the queue was empty (it sleeps without a deadline)
            # or a full batch is now ready (it may be waiting out max_wait).
            if was_empty or self._queued_inputs >= self.max_batch_size:
                self._cond.notify()
        if timeout_s is not None:
            job.timer = loop.call_later(timeout_s, self._expire, job)
        return future

    @staticmethod
    def _expire(job: Job) -> None:
        job.abandoned = True  # the worker skips it if it is still queued
        if not job.future.done():
            job.future.set_exception(RequestTimeout())

    @staticmethod
    def _deliver(jobs: list[Job], outcomes: list) -> None:
        for job, outcome in zip(jobs, outcomes):
            if job.timer is not None:
                job.timer.cancel()
            if job.future.done():
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    async def close(self) -> None:
        """Stop accepting, finish everything queued, stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
            self._thread = None

    # ---- worker thread ---------------------------------------------------------------------------

    def _take_batch(self) -> list[Job] | None:
        """Block until a batch is due; None when closing and nothing is left."""
        with self._cond:
            while True:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return None
                deadline = self._queue[0].enqueued + self.max_wait_s
                while self._queued_inputs < self.max_batch_size and not self._closing:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch, size = [], 0
                while self._queue:
                    job = self._queue[0]
                    n = len(job.texts)
                    if job.abandoned:
                        self._queue.popleft()
                        self._queued_inputs -= n
                        continue
                    if batch and size + n > self.max_batch_size:
                        break
                    self._queue.popleft()
                    self._queued_inputs -= n
                    batch.append(job)
                    size += n
                if batch:
                    return batch

    def _run(self) -> None:
        lower_thread_priority(self.nice)
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            started = time.perf_counter()
            try:
                outcomes = self._infer(batch)
            except Exception as e:  # the backend failed: every request of the batch gets a 500
                log.exception("inference failed for a batch of %d request(s)", len(batch))
                outcomes = [InferenceFailed(f"inference failed: {e.__class__.__name__}: {e}")] * len(batch)
            if self.metrics is not None:
                m = self.metrics
                for job in batch:
                    m.queue_time.observe(started - job.enqueued)
                m.batch_requests.observe(len(batch))
                m.batch_time.observe(time.perf_counter() - started)
            try:
                self._loop.call_soon_threadsafe(self._deliver, batch, outcomes)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return

    def _infer(self, batch: list[Job]) -> list:
        p = self.predictor
        texts: list[str] = []
        pairs: list[str] | None = [] if batch[0].pairs is not None else None
        for job in batch:
            texts.extend(job.texts)
            if pairs is not None:
                pairs.extend(job.pairs)
        encoded = p.encode(texts, pairs)
        logits = np.zeros((len(texts), len(p.labels)), dtype=np.float32)
        for idx in p.batches(encoded.lengths):
            logits[idx] = p.backend.logits(p.pad(encoded, idx))
        probs = p.probabilities(logits)
        truncated: Sequence[bool] = encoded.truncated
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(texts))
            self.metrics.inputs.inc(len(texts))
            self.metrics.tokens.inc(sum(encoded.lengths))
            n_trunc = sum(truncated)
            if n_trunc:
                self.metrics.truncated.inc(n_trunc)
        outcomes: list = []
        start = 0
        for job in batch:
            end = start + len(job.texts)
            if not job.truncate and any(truncated[start:end]):
                first = next(i for i in range(start, end) if truncated[i]) - start
                outcomes.append(InputTooLong(first, p.info.max_length))
            else:
                outcomes.append([p.format_result(probs[i], truncated[i], job.top_k) for i in range(start, end)])
            start = end
        return outcomes
