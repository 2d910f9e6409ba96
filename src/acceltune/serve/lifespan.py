"""Startup and shutdown shared by every route.

Startup does not wait for the models: the server listens at once, /healthz answers 200 and /readyz 503
until every router's model has been loaded and warmed up on a background thread (a slow load never makes
the process look dead to an orchestrator). A router starts its batchers from its own lifespan with
``start_batcher``. Shutdown (uvicorn, after SIGTERM, has stopped accepting connections and waited for
every in-flight request) closes every batcher, each first finishing everything queued.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from contextlib import asynccontextmanager
from typing import Callable, Iterable

from fastapi import FastAPI

from acceltune.serve.batcher import Batcher, BatchFunction, lower_thread_priority
from acceltune.serve.settings import ServeSettings
from acceltune.serve.state import ServeState

log = logging.getLogger("acceltune.serve")

#: The collector's thresholds once serving (Python's defaults: 700, 10, 10). With the defaults, the objects of
#: requests in flight (about 100 each: coroutines, scopes, protocols) outlive the young collections, and under
#: load a full collection of them ran every second and held the event loop 100-150 ms: most of the tail of
#: refusals at 4x overload (p99 63 ms; 5-7 ms with these) and of answers (docs/benchmarks.md). Garbage in
#: cycles waits longer for collection: at most a few tens of thousands of objects.
GC_THRESHOLDS = (50_000, 20, 100)


def start_batcher(st: ServeState, name: str, load: Callable[[], BatchFunction], *, paths: Iterable[str] = (),
                  settings: ServeSettings | None = None) -> None:
    """Run ``load`` on a background thread, then serve its batch function through a batcher called ``name``
    (limits from ``settings``, default the app's; a router whose work must stay in order passes
    ``st.settings.in_order(reason)``). ``paths``: the POST paths whose requests it serves, refused at the edge
    (429) while its queue is full. Returns at once; the server is ready when every load has finished."""
    if name in st.batchers or any(t.get_name() == f"load-{name}" for t in st.loading):
        raise ValueError(f"a batcher called {name!r} exists already")
    for path in paths:
        st.batched_paths[path] = name
    st.loading.append(asyncio.create_task(_load(st, name, load, settings or st.settings), name=f"load-{name}"))


def _load_at_lower_priority(load: Callable[[], BatchFunction], nice: int) -> BatchFunction:
    # This thread creates the backend's thread pools: at a lower priority, so do they (see lower_thread_priority).
    lower_thread_priority(nice)
    return load()


async def _load(st: ServeState, name: str, load: Callable[[], BatchFunction], s: ServeSettings) -> None:
    try:
        fn = await asyncio.to_thread(_load_at_lower_priority, load, s.inference_nice)
    except Exception as e:
        st.load_error = f"{e.__class__.__name__}: {e}"
        log.error("cannot load %s: %s", name, st.load_error)
        if st.on_load_error is not None:
            st.on_load_error(e)
        return
    batcher = Batcher(fn, name=name, max_batch_size=s.max_batch_size, max_wait_s=s.max_wait_ms / 1000.0,
                      max_queue=s.max_queue, max_queue_wait_s=s.max_queue_wait_ms / 1000.0,
                      metrics=st.metrics.for_batcher(name), nice=s.inference_nice,
                      workers=s.workers)
    batcher.start(asyncio.get_running_loop())
    st.batchers[name] = batcher
    if all(t.done() or t is asyncio.current_task() for t in st.loading):
        # Everything loaded so far (libraries, models, tokenizers) lives as long as the process: move it out of
        # the collector's view, so full collections under load scan only per-request garbage (shorter pauses).
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        if st.peers is not None:
            st.peers.loaded()
        log.info("ready")


@asynccontextmanager
async def lifespan(app: FastAPI):
    """The app's own lifespan: outside every router's (FastAPI nests those inside), so it drains last."""
    st: ServeState = app.state.serve
    st.metrics.watch(st.metrics.ready, lambda: 1.0 if st.ready else 0.0)
    st.started = True
    refresher = asyncio.create_task(st.metrics.refresh_forever(), name="metrics-refresh") if st.metrics.multiprocess else None
    try:
        yield
    finally:
        st.begin_drain()
        if refresher is not None:
            refresher.cancel()
            st.metrics.refresh()  # /readyz's 0 shows in the other processes' scrapes while this one drains
        for task in st.loading:
            try:
                await task
            except BaseException:  # noqa: BLE001 - already reported by _load
                pass
        for batcher in st.batchers.values():
            await batcher.close()  # finishes everything queued before returning
        m = st.metrics
        # uvicorn has waited for every request in flight by now: received == answered unless one was cut off.
        log.info("stopped: %d requests received, %d answered", m.received, m.answered)
