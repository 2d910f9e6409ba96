"""Dynamic batching across concurrent requests, for any batch function.

A batch function takes a list of inputs and returns one result per input, in order (e.g. the classify
route's: texts -> result dicts). Requests are queued on the event loop (``submit``, non-blocking,
bounded) and the batcher's worker thread(s) form batches: a free worker takes the oldest request, then
waits up to ``max_wait_s`` after that request arrived for others, until ``max_batch_size`` inputs are
queued. A request is never split across batches. The worker runs the batch function off the event loop,
then hands all of the batch's results back to the loop in one callback. A batch function may instead
return a ``concurrent.futures.Future`` of its results, for work that must finish before the answers go
out but need not hold up the next batch (the assistant's database commit): the worker goes on to the
next batch at once, and the requests are answered when the future resolves. With ``workers`` > 1 that many
batches run at once (the batch function must be thread-safe: an ONNX Runtime session is). A batch
function whose decisions must follow the order of the requests (a conversation's turns) is a `Staged` one:
its ``prepare`` (the model) runs on any worker, its ``finish`` one batch at a time, in the order the batches
were formed. Several batchers (one per model or route) may run in one app.

The queue is bounded twice: by ``max_queue`` inputs, and by time, ``max_queue_wait_s``: what the batcher
can drain in that time at its capacity, the fastest recent drain rate (inputs per second of batch time, a
moving average over batches, after WARMUP_BATCHES), which decays with a CAPACITY_HALF_LIFE_S half-life
when the rate stays below it. The time bound is what adapts to the hardware: the
same setting queues a few hundred inputs on two CPU cores and thousands on a GPU, so a pool of
closed-loop clients the machine serves within that time is never refused (each refusal a client re-sends
at once costs the CPU the accepted requests need). A slowly decaying peak, not the current rate: under a
storm of refusals inference slows, and a bound that followed at once would shrink and refuse more; but a
peak held for ever would, under a sustained overload, queue several seconds of work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from acceltune.serve.metrics import BatcherMetrics

log = logging.getLogger("acceltune.serve")

#: Batches not measured for the drain rate: the first calls of a fresh model are slow (allocations, caches).
WARMUP_BATCHES = 10
#: How fast the capacity follows a drain rate that stays lower (a slower machine, a sustained overload).
CAPACITY_HALF_LIFE_S = 10.0

class Staged:
    """A batch function in two stages: ``prepare(inputs) -> state`` runs on any worker, several batches at once;
    ``finish(state) -> results`` (or a Future of them) runs one batch at a time, in the order the batches were
    formed, so what it decides for a request may depend on every earlier request."""

    def prepare(self, inputs: list) -> Any:
        raise NotImplementedError

    def finish(self, state: Any) -> "Sequence[Any] | concurrent.futures.Future":
        raise NotImplementedError


#: Inputs in, one result per input out, in order (or a Future of them), or a Staged pair of such stages. Runs on
#: the batcher's worker threads.
BatchFunction = Callable[[list], "Sequence[Any] | concurrent.futures.Future"] | Staged


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


def _outcome(future: concurrent.futures.Future):
    """A done future's result, or the exception it ended with (a cancelled one included)."""
    try:
        return future.result()
    except BaseException as e:  # noqa: BLE001 - handed on: every request of the batch gets a 500
        return e


class QueueFull(Exception):
    """The queue holds max_queue inputs already."""


class Draining(Exception):
    """The server is shutting down and accepts no new work."""


class RequestTimeout(Exception):
    """The request was not answered within its timeout."""


class InferenceFailed(Exception):
    """The batch function raised while running the batch this request was in."""


@dataclass(eq=False, slots=True)
class Job:
    inputs: list
    future: asyncio.Future
    enqueued: float
    timer: asyncio.TimerHandle | None
    abandoned: bool


class Batcher:
    def __init__(self, fn: BatchFunction, *, name: str = "batch", max_batch_size: int = 64, max_wait_s: float = 0.002,
                 max_queue: int = 256, max_queue_wait_s: float | None = None, metrics: "BatcherMetrics | None" = None,
                 nice: int = 0, workers: int = 1):
        if workers < 1:
            raise ValueError("a batcher needs at least one worker")
        self.fn = fn
        self.workers = workers
        self.name = name
        self.nice = nice
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.max_queue_wait_s = max_queue_wait_s
        self.metrics = metrics
        self._queue_limit = max_queue  # lowered to capacity x max_queue_wait_s once measured
        self._batches = 0
        self._rate: float | None = None  # inputs per second, all workers together (moving average)
        self._capacity = 0.0  # the highest _rate, decaying
        self._measured_at = 0.0
        self._queue: deque[Job] = deque()
        self._queued_inputs = 0
        self._idle = 0  # workers waiting for a batch
        self._due = False  # the queue holds the rest of a shared batch
        self._formed = 0  # batches taken from the queue so far: each batch's place in the order of finishing
        self._finished = 0  # batches whose Staged.finish has run (or been skipped)
        self._prepared: dict[int, tuple] = {}  # place -> a Staged batch prepared, waiting for its turn to finish
        self._finishing = False  # a worker is finishing Staged batches (one at a time, in order)
        self._turn = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._closing = False
        self._hurry = False  # shutting down: run what is queued without waiting for fuller batches
        self._threads: list[threading.Thread] = []
        self._deferred: set[concurrent.futures.Future] = set()  # batch functions' futures not resolved yet
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- event-loop side -------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._threads = [threading.Thread(target=self._run, name=f"acceltune-batcher-{self.name}" + (f"-{i}" if i else ""),
                                          daemon=True) for i in range(self.workers)]
        for thread in self._threads:
            thread.start()
        if self.metrics is not None:
            self.metrics.watch(self.metrics.queue_depth, lambda: self._queued_inputs)
            self.metrics.watch(self.metrics.queue_limit, lambda: self._queue_limit)

    @property
    def queued_inputs(self) -> int:
        return self._queued_inputs

    @property
    def queue_limit(self) -> int:
        """Inputs that may wait: max_queue, or what drains in max_queue_wait_s at the measured capacity."""
        return self._queue_limit

    @property
    def full(self) -> bool:
        return self._queued_inputs >= self._queue_limit

    @property
    def worker_native_id(self) -> int | None:
        """The first worker's thread id."""
        return self._threads[0].native_id if self._threads else None

    def submit(self, inputs: list, timeout_s: float | None = None) -> asyncio.Future:
        """Queue one request's inputs; the future resolves to their results, in order (or a Batcher exception).

        Never blocks: raises QueueFull or Draining at once when the request cannot be queued.
        """
        loop = self._loop
        future = loop.create_future()
        n = len(inputs)
        job = Job(inputs, future, time.perf_counter(), None, False)
        with self._cond:
            if self._closing:
                raise Draining()
            if self._queued_inputs + n > max(self._queue_limit, n):  # a request beyond the limit may wait alone
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

    def hurry(self) -> None:
        """Stop waiting for fuller batches (still accepting): on SIGTERM, before uvicorn waits for the
        requests in flight, which a long --max-wait-ms would otherwise hold back. Safe in a signal handler:
        the lock is taken later, on the event loop (the handler may have interrupted a holder of it)."""
        self._hurry = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    async def close(self) -> None:
        """Stop accepting, finish everything queued (deferred results included), stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for thread in self._threads:
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
        self._threads = []
        if self._deferred:
            await asyncio.wait([asyncio.wrap_future(f) for f in list(self._deferred)])

    # ---- worker thread ---------------------------------------------------------------------------

    def _take_batch(self) -> tuple[list[Job], int] | None:
        """Block until a batch is due: (its jobs, its place in the order batches are formed); None when closing
        and nothing is left."""
        with self._cond:
            self._idle += 1
            try:
                while True:
                    while not self._queue and not self._closing:
                        self._cond.wait()
                    if not self._queue:
                        return None
                    deadline = self._queue[0].enqueued + self.max_wait_s
                    while self._queued_inputs < self.max_batch_size and not (self._closing or self._hurry or self._due):
                        remaining = deadline - time.perf_counter()
                        if remaining <= 0:
                            break
                        self._cond.wait(remaining)
                    # A burst is shared with the other idle workers rather than taken whole by the first awake
                    # (clients answered together come back together: one full batch would leave a worker idle).
                    limit = min(self.max_batch_size, -(-self._queued_inputs // self._idle))
                    batch, size = [], 0
                    while self._queue:
                        job = self._queue[0]
                        n = len(job.inputs)
                        if job.abandoned:
                            self._queue.popleft()
                            self._queued_inputs -= n
                            continue
                        if batch and size + n > limit:
                            break
                        self._queue.popleft()
                        self._queued_inputs -= n
                        batch.append(job)
                        size += n
                    if batch:
                        # What a share left behind is the rest of a batch that was due: the next worker runs it at once.
                        self._due = bool(self._queue) and limit < self.max_batch_size
                        if self._queue:
                            self._cond.notify()  # another idle worker may be asleep on an empty queue
                        self._formed += 1
                        return batch, self._formed - 1
            finally:
                self._idle -= 1

    def _run(self) -> None:
        lower_thread_priority(self.nice)
        while True:
            taken = self._take_batch()
            if taken is None:
                return
            batch, place = taken
            started = time.perf_counter()
            inputs = [x for job in batch for x in job.inputs]
            if isinstance(self.fn, Staged):
                going = self._prepare_and_finish_in_order(batch, place, started, inputs)
            else:
                try:
                    results = self.fn(inputs)
                except Exception as e:
                    results = e
                going = self._hand_over(batch, len(inputs), started, results)
            if not going:
                return

    def _prepare_and_finish_in_order(self, batch: list[Job], place: int, started: float, inputs: list) -> bool:
        """Prepare this batch, then leave it for whichever worker finishes batches now, or become that worker:
        finish every prepared batch whose turn has come, in order. A worker never waits for another's prepare."""
        try:
            state, failed = self.fn.prepare(inputs), None
        except BaseException as e:  # noqa: BLE001 - whatever it was, the batches behind this one must get their turn
            state, failed = None, e
        with self._turn:
            self._prepared[place] = (batch, len(inputs), started, state, failed)
            if self._finishing:
                return True
            self._finishing = True
        going = True
        while True:
            with self._turn:
                item = self._prepared.pop(self._finished, None)
                if item is None:
                    self._finishing = False
                    return going
            batch, n, started, state, failed = item
            try:
                results = failed if failed is not None else self.fn.finish(state)
            except Exception as e:
                results = e
            with self._turn:
                self._finished += 1
            going = self._hand_over(batch, n, started, results) and going

    def _hand_over(self, batch: list[Job], n: int, started: float, results) -> bool:
        """Results (or the exception raised, or a Future of them) to the batch's requests; False once the loop
        is closed."""
        if isinstance(results, concurrent.futures.Future):
            # Measured up to here: the future's remaining work runs beside the next batch.
            self._measure(n, time.perf_counter() - started)
            self._deferred.add(results)
            results.add_done_callback(self._deferred.discard)
            results.add_done_callback(lambda f: self._finish(batch, n, started, _outcome(f), measured=True))
            return True
        return self._finish(batch, n, started, results)

    def _finish(self, batch: list[Job], n: int, started: float, results, measured: bool = False) -> bool:
        """Split ``results`` (or the exception the batch function raised) per request, observe the batch and
        hand it to the event loop; False once the loop is closed (nobody is waiting any more)."""
        if not isinstance(results, BaseException):
            try:
                outcomes = self._split(batch, n, results)
                if not measured:
                    self._measure(n, time.perf_counter() - started)
            except Exception as e:
                results = e
        if isinstance(results, BaseException):  # the batch function failed: every request of the batch gets a 500
            log.error("batch function %r failed for a batch of %d request(s)", self.name, len(batch), exc_info=results)
            outcomes = [InferenceFailed(f"inference failed: {results.__class__.__name__}: {results}")] * len(batch)
        if self.metrics is not None:
            m = self.metrics
            for job in batch:
                m.queue_time.observe(started - job.enqueued)
            m.batch_requests.observe(len(batch))
            m.batch_time.observe(time.perf_counter() - started)
        try:
            self._loop.call_soon_threadsafe(self._deliver, batch, outcomes)
        except RuntimeError:
            return False
        return True

    def _measure(self, inputs: int, seconds: float) -> None:
        """Update the drain rate, the capacity and the queue limit they imply (after a batch that succeeded).
        Workers call it without a lock: a lost update of a moving average is harmless."""
        self._batches += 1
        if self.max_queue_wait_s is None or seconds <= 0 or self._batches <= WARMUP_BATCHES:
            return
        rate = self.workers * inputs / seconds
        self._rate = rate if self._rate is None else 0.9 * self._rate + 0.1 * rate  # one odd batch moves it little
        now = time.perf_counter()
        decayed = self._capacity * 0.5 ** ((now - self._measured_at) / CAPACITY_HALF_LIFE_S)
        self._capacity, self._measured_at = max(self._rate, decayed), now
        self._queue_limit = max(self.max_batch_size, min(self.max_queue, int(self._capacity * self.max_queue_wait_s)))

    def _split(self, batch: list[Job], n: int, results: Sequence[Any]) -> list[list]:
        if len(results) != n:
            raise RuntimeError(f"the batch function returned {len(results)} results for {n} inputs")
        if self.metrics is not None:
            self.metrics.batch_size.observe(n)
            self.metrics.inputs.inc(n)
        outcomes, start = [], 0
        for job in batch:
            end = start + len(job.inputs)
            outcomes.append(list(results[start:end]))
            start = end
        return outcomes
