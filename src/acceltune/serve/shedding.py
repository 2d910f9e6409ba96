"""Load shedding at the edge of the app: while a batcher's queue is full, requests to the paths it serves
(ServeState.batched_paths, registered by the routers) are refused (429) before routing, before a
Request object exists and before their body is read.

Under overload most requests are refused, so what a refusal costs the event loop decides how much CPU
is left for the requests that are accepted (measured in docs/benchmarks.md). A request without a valid
API key is not refused here: it goes on to the app and gets its 401.
"""

from __future__ import annotations

from acceltune.serve.auth import authorized
from acceltune.serve.refusals import queue_full
from acceltune.serve.state import ServeState


class LoadShedder:
    """Pure ASGI middleware (placed inside MetricsMiddleware, so refusals are counted like any response)."""

    def __init__(self, app, state: ServeState):
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            st = self.state
            batcher = st.batcher_for(scope["path"])
            if batcher is not None and batcher.full and authorized(st.settings.api_keys, _authorization(scope)):
                await queue_full(st, batcher).response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _authorization(scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return value.decode("latin-1")
    return ""
