"""The answers every route gives when it cannot serve now: not ready (503) and queue full (429)."""

from __future__ import annotations

from acceltune.serve.errors import APIError
from acceltune.serve.state import ServeState

RETRY_AFTER = {"Retry-After": "1"}


def not_ready(st: ServeState) -> APIError:
    if st.draining:
        return APIError(503, "shutting_down", "the server is shutting down", headers=RETRY_AFTER)
    if st.load_error:
        return APIError(503, "load_failed", f"the model failed to load: {st.load_error}")
    return APIError(503, "not_ready", "the model is still loading", headers=RETRY_AFTER)


def queue_full(st: ServeState, max_queue: int) -> APIError:
    st.metrics.rejected.labels("queue_full").inc()
    return APIError(429, "queue_full", f"the server is at capacity ({max_queue} inputs queued): retry later",
                    limit="--max-queue", max=max_queue, headers=RETRY_AFTER)
