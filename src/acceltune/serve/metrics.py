"""Prometheus metrics, one registry per app (so several apps in one process, e.g. tests, never collide).

Hot-path cost is kept to a few microseconds per request: labelled children are cached, the queue
depth is read only at scrape time, and per-input counters are updated once per batch.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512)

#: Paths given their own label; anything else is counted as "other" (bounded label cardinality).
KNOWN_PATHS = ("/v1/classify", "/v1/model", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("acceltune_http_requests", "HTTP requests answered, by path and status code.",
                                ("path", "status"), registry=r)
        self.latency = Histogram("acceltune_http_request_duration_seconds",
                                 "Time from request start to the last response byte, by path.", ("path",),
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.queue_time = Histogram("acceltune_queue_wait_seconds",
                                    "Time a classify request waited in the queue before its batch started.",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("acceltune_batch_size", "Inputs per model batch.", buckets=BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("acceltune_batch_requests", "Requests per model batch.", buckets=BATCH_BUCKETS,
                                        registry=r)
        self.batch_time = Histogram("acceltune_batch_duration_seconds",
                                    "Time to tokenize, run and post-process one batch.", buckets=LATENCY_BUCKETS,
                                    registry=r)
        self.queue_depth = Gauge("acceltune_queue_depth", "Inputs waiting for a batch now.", registry=r)
        self.inputs = Counter("acceltune_inputs", "Inputs classified.", registry=r)
        self.tokens = Counter("acceltune_tokens", "Tokens classified (after truncation, before padding).", registry=r)
        self.truncated = Counter("acceltune_truncated_inputs", "Inputs longer than the model's maximum tokens.",
                                 registry=r)
        self.rejected = Counter("acceltune_rejected_requests", "Classify requests refused before inference, by reason.",
                                ("reason",), registry=r)
        self.ready = Gauge("acceltune_ready", "1 once the model is loaded and the server accepts requests.", registry=r)
        self._children: dict[tuple[str, int], tuple] = {}

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        key = (path, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(path, str(status)), self.latency.labels(path))
        children[0].inc()
        children[1].observe(seconds)


class MetricsMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware overhead): counts every response by path and status."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics
        self.known = frozenset(KNOWN_PATHS)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
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
        except BaseException:
            if status == 500:  # nothing sent: the server answers 500 above us
                self.metrics.observe_request(path, 500, time.perf_counter() - start)
            raise
