"""Prometheus metrics, one registry per app (so several apps in one process, e.g. tests, never collide).

HTTP metrics are labelled by path (the app's own routes; anything else is "other"), batching metrics by
batcher (one per model or route, e.g. "classify"). Hot-path cost is kept to a few microseconds per
request: labelled children are cached, queue depths are read only at scrape time, and per-input
counters are updated once per batch.

Several server processes (``--processes N``) share one port and one /metrics: prometheus_client's
multiprocess mode (values in files under PROMETHEUS_MULTIPROC_DIR, which acceltune.serve.workers sets), so
any process's scrape sums all of them. A gauge read from a function cannot be read across processes: there
each process writes its gauges' values every REFRESH_S instead.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512)
#: How often each of several processes writes its watched gauges (their staleness in /metrics).
REFRESH_S = 1.0
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's


@dataclass(frozen=True)
class BatcherMetrics:
    """The children of one batcher's metrics (label ``batcher``), resolved once."""

    queue_time: Histogram
    batch_size: Histogram
    batch_requests: Histogram
    batch_time: Histogram
    queue_depth: Gauge
    queue_limit: Gauge
    inputs: Counter
    tokens: Counter
    truncated: Counter
    watch: Callable[[Gauge, Callable[[], float]], None]


class Metrics:
    def __init__(self) -> None:
        #: One of several server processes: values live in shared files, the scrape sums every process.
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_VARIABLE))
        self._watched: list[tuple[Gauge, Callable[[], float]]] = []
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("acceltune_http_requests", "HTTP requests answered, by path and status code.",
                                ("path", "status"), registry=r)
        self.latency = Histogram("acceltune_http_request_duration_seconds",
                                 "Time from request start to the last response byte, by path.", ("path",),
                                 buckets=LATENCY_BUCKETS, registry=r)
        by = ("batcher",)
        self.queue_time = Histogram("acceltune_queue_wait_seconds",
                                    "Time a request waited in the queue before its batch started, by batcher.", by,
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("acceltune_batch_size", "Inputs per model batch, by batcher.", by,
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("acceltune_batch_requests", "Requests per model batch, by batcher.", by,
                                        buckets=BATCH_BUCKETS, registry=r)
        self.batch_time = Histogram("acceltune_batch_duration_seconds",
                                    "Time to run one batch (tokenize, infer, post-process), by batcher.", by,
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("acceltune_queue_depth", "Inputs waiting for a batch now, by batcher.", by, registry=r,
                                 multiprocess_mode="livesum")
        self.queue_limit = Gauge("acceltune_queue_limit", "Inputs that may wait now (--max-queue, or what drains in "
                                 "--max-queue-wait-ms at the measured capacity), by batcher.", by, registry=r,
                                 multiprocess_mode="livesum")
        self.inputs = Counter("acceltune_inputs", "Inputs run through a batch function, by batcher.", by, registry=r)
        self.tokens = Counter("acceltune_tokens", "Tokens of text inputs (after truncation, before padding), by batcher.",
                              by, registry=r)
        self.truncated = Counter("acceltune_truncated_inputs", "Text inputs longer than the model's maximum tokens, by batcher.",
                                 by, registry=r)
        self.rejected = Counter("acceltune_rejected_requests", "Requests refused before their batch ran, by reason.",
                                ("reason",), registry=r)
        self.ready = Gauge("acceltune_ready", "1 once every model is loaded and the server accepts requests (every "
                           "process, with several).", registry=r, multiprocess_mode="livemin")
        #: HTTP requests that entered the app, and those answered (last body byte sent): plain ints, so the
        #: shutdown log can say exactly whether SIGTERM left any accepted request unanswered.
        self.received = 0
        self.answered = 0
        self.in_flight = Gauge("acceltune_http_requests_in_flight", "HTTP requests received and not yet answered.",
                               registry=r, multiprocess_mode="livesum")
        self.watch(self.in_flight, lambda: self.received - self.answered)
        self._children: dict[tuple[str, int], tuple] = {}

    def for_batcher(self, name: str) -> BatcherMetrics:
        return BatcherMetrics(*(m.labels(name) for m in (self.queue_time, self.batch_size, self.batch_requests,
                                                          self.batch_time, self.queue_depth, self.queue_limit, self.inputs, self.tokens,
                                                          self.truncated)), watch=self.watch)

    def watch(self, gauge: Gauge, read: Callable[[], float]) -> None:
        """``gauge`` shows ``read()``: read at scrape time, or every REFRESH_S with several processes."""
        if self.multiprocess:
            self._watched.append((gauge, read))
            gauge.set(read())
        else:
            gauge.set_function(read)

    def refresh(self) -> None:
        """Write the watched gauges' values now (several processes only; a no-op otherwise)."""
        for gauge, read in self._watched:
            gauge.set(read())

    async def refresh_forever(self) -> None:
        while True:
            self.refresh()
            await asyncio.sleep(REFRESH_S)

    def exposition(self) -> tuple[bytes, str]:
        """The /metrics body and its content type: this process's registry, or every process's files."""
        if not self.multiprocess:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client.multiprocess import MultiProcessCollector

        self.refresh()
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        key = (path, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(path, str(status)), self.latency.labels(path))
        children[0].inc()
        children[1].observe(seconds)
        self.answered += 1


class MetricsMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware overhead): counts every response by path and status.

    ``paths``: the paths given their own label (the app's routes); anything else is counted as "other",
    so that scanners cannot blow up the label cardinality."""

    def __init__(self, app, metrics: Metrics, paths: frozenset[str]):
        self.app = app
        self.metrics = metrics
        self.known = paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        self.metrics.received += 1
        path = scope["path"] if scope["path"] in self.known else "other"
        status = 500

        async def send_wrapper(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                self.metrics.observe_request(path, status, time.perf_counter() - start)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except asyncio.CancelledError:  # cut off (the graceful-shutdown timeout ran out): never answered
            raise
        except BaseException:
            if status == 500:  # nothing sent: the server answers 500 above us
                self.metrics.observe_request(path, 500, time.perf_counter() - start)
            raise
