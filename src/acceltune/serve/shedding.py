"""Load shedding at the edge of the app: while the queue is full, classify requests are refused (429)
before routing, before a Request object exists and before their body is read.

Under overload most requests are refused, so what a refusal costs the event loop decides how much CPU
is left for the requests that are accepted (measured in docs/benchmarks.md). A request without a valid
API key is not refused here: it goes on to the app and gets its 401.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from acceltune.serve.routes import authorized, queue_full

if TYPE_CHECKING:
    from acceltune.serve.app import ServeState


class LoadShedder:
    """Pure ASGI middleware (placed inside MetricsMiddleware, so refusals are counted like any response)."""

    def __init__(self, app, state: "ServeState"):
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/v1/classify" and scope["method"] == "POST":
            st = self.state
            if st.batcher is not None and st.batcher.queued_inputs >= st.settings.max_queue and authorized(st, _authorization(scope)):
                await queue_full(st)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _authorization(scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return value.decode("latin-1")
    return ""
