"""The answers every route gives when it cannot serve now: not ready (503) and queue full (429)."""

from __future__ import annotations

from acceltune.serve.batcher import Batcher
from acceltune.serve.errors import APIError
from acceltune.serve.state import ServeState

RETRY_AFTER = {"Retry-After": "1"}


def not_ready(st: ServeState) -> APIError:
    if st.draining:
        return APIError(503, "shutting_down", "the server is shutting down", headers=RETRY_AFTER)
    if st.load_error:
        return APIError(503, "load_failed", f"the model failed to load: {st.load_error}")
    return APIError(503, "not_ready", "the model is still loading", headers=RETRY_AFTER)


def queue_full(st: ServeState, batcher: Batcher) -> APIError:
    st.metrics.rejected.labels("queue_full").inc()
    limit = batcher.queue_limit
    if limit < batcher.max_queue:  # the time bound is the one in force
        wait_ms = batcher.max_queue_wait_s * 1000
        return APIError(429, "queue_full", f"the server is at capacity ({limit} inputs queued, about {wait_ms:g} ms of "
                        "work at its measured rate): retry later", limit="--max-queue-wait-ms", max=wait_ms,
                        headers=RETRY_AFTER)
    return APIError(429, "queue_full", f"the server is at capacity ({limit} inputs queued): retry later",
                    limit="--max-queue", max=limit, headers=RETRY_AFTER)
