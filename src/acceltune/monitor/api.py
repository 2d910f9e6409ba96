"""The monitor's HTTP routes on the shared server (create_app gives auth, limits, shedding, metrics, drain):

    POST /v1/items      a batch of items, scored through the batcher and stored like `monitor ingest` does
    GET  /v1/index      an entity's index per bucket of a window (since/until, cursor pages)
    GET  /v1/items      the latest items, of one entity or all (cursor pages)
    GET  /v1/alerts     the latest alerts (cursor pages)
    GET  /v1/entities   entities by item count (what the dashboard charts)
    GET  /              the dashboard (static page, scripts and uPlot served from this package); ``page_router``
                        serves it without the API key (it holds no data; its script sends the key it is given)
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Annotated

import numpy as np
import orjson
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response

from acceltune.monitor import schemas
from acceltune.monitor.alerts import Alert
from acceltune.monitor.entities import Tagger
from acceltune.monitor.ingest import Ingester
from acceltune.monitor.items import Item
from acceltune.monitor.sentiment import Polarity
from acceltune.monitor.settings import AlertRules, IndexSettings, WebhookSettings
from acceltune.monitor.store import Store
from acceltune.monitor.timestamps import format_ms, parse_ms
from acceltune.monitor.webhook import WebhookSender
from acceltune.serve import APIError, ErrorResponse, batcher_or_503, json_body, read_json, run_batch, start_batcher

STATIC = Path(__file__).parent / "static"
#: the files the dashboard loads (nothing else under STATIC is served)
STATIC_FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css", "uPlot.iife.min.js": "text/javascript",
                "uPlot.min.css": "text/css"}
MS_BOUND = 10 ** 16  # cursors and bounds stay inside a 64-bit column whatever a client sends
IN_ORDER = "the monitor commits items through one writer, in order, so its alerts follow them"
POST_ERRORS = {status: {"model": ErrorResponse} for status in (401, 413, 422, 429, 503, 504)}
GET_ERRORS = {status: {"model": ErrorResponse} for status in (401, 404, 422)}

Entity = Annotated[str, Query(min_length=1, max_length=200, pattern=r"^[^\x00]+$", description="An entity's name; * for all items.")]
OptionalEntity = Annotated[str, Query(min_length=1, max_length=200, pattern=r"^[^\x00]+$", description="Only this entity's (default: all).")]
When = Annotated[str, Query(json_schema_extra={"format": "date-time"}, description="ISO 8601 with a zone (RFC 3339).")]


def _ms(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_ms(value)
    except ValueError as e:
        raise APIError(422, "invalid_request", f"{name}: {e}") from None


def _alert_out(a: dict) -> dict:
    return dict(a, start=format_ms(a["start_ms"]), created_at=format_ms(a.pop("created_at_ms")))


class SharedPathRoute(APIRoute):
    """A route whose path has other routes (GET and POST /v1/items): a 405 names every method of the path in
    Allow, not only this route's (Starlette answers for the first route whose path matches)."""

    allow: str = ""

    async def handle(self, scope, receive, send) -> None:
        if scope["method"] not in self.methods:
            raise HTTPException(405, headers={"Allow": self.allow})
        await super().handle(scope, receive, send)


class MonitorRoutes:
    """The router over one store and one model directory; its batcher is called ``name``."""

    def __init__(self, store: Store, model_dir: str | Path, *, index: IndexSettings, rules: AlertRules,
                 webhook: WebhookSettings, tagger: Tagger | None = None, name: str = "monitor"):
        self.store, self.model_dir, self.index, self.rules, self.webhook = store, Path(model_dir), index, rules, webhook
        self.tagger, self.name = tagger, name
        self.ingester: Ingester | None = None
        self.sender: WebhookSender | None = None
        self._write = threading.Lock()  # one writer per process: batches commit one after another
        r = self.router = APIRouter(lifespan=self.lifespan)
        r.add_api_route("/v1/items", self.post_items, methods=["POST"], response_model=schemas.IngestResponse,
                        summary="Score and store a batch of items (idempotent by id)", responses=POST_ERRORS,
                        openapi_extra=json_body(schemas.ItemsRequest), route_class_override=SharedPathRoute)
        r.add_api_route("/v1/index", self.get_index, methods=["GET"], response_model=schemas.IndexResponse,
                        summary="An entity's sentiment index per bucket of a window", responses=GET_ERRORS)
        r.add_api_route("/v1/items", self.get_items, methods=["GET"], response_model=schemas.ItemsResponse,
                        summary="The latest items with their labels and scores", responses=GET_ERRORS,
                        route_class_override=SharedPathRoute)
        r.add_api_route("/v1/alerts", self.get_alerts, methods=["GET"], response_model=schemas.AlertsResponse,
                        summary="The latest alerts", responses=GET_ERRORS)
        r.add_api_route("/v1/entities", self.get_entities, methods=["GET"], response_model=schemas.EntitiesResponse,
                        summary="Entities by item count", responses=GET_ERRORS)
        page = self.page_router = APIRouter(include_in_schema=False)
        page.add_api_route("/", self.dashboard, methods=["GET"])
        page.add_api_route("/static/{name}", self.static, methods=["GET"])
        shared = [route for route in r.routes if isinstance(route, SharedPathRoute)]
        for route in shared:
            route.allow = ", ".join(sorted({m for other in shared if other.path == route.path for m in other.methods}))

    # ------------------------------------------------------------------------------------ lifecycle

    @asynccontextmanager
    async def lifespan(self, app: FastAPI):
        st = app.state.serve
        settings = st.settings.in_order(IN_ORDER)
        start_batcher(st, self.name, partial(self._load, settings), paths=["/v1/items"], settings=settings)
        if self.webhook.webhook:
            self.sender = WebhookSender(self.store, self.webhook).start()
        try:
            yield
        finally:
            if self.sender is not None:
                await asyncio.to_thread(self.sender.close)

    def _load(self, settings):
        from acceltune import Predictor

        predictor = Predictor(self.model_dir, backend=settings.backend, device=settings.device, threads=settings.inference_threads)
        polarity = Polarity.of(predictor.labels, self.index.positive_label, self.index.negative_label)
        predictor.scores(["warm up"])
        self.ingester = Ingester(self.store, polarity, predictor.info.version, self.index, self.rules, self.tagger,
                                 self._on_alerts)
        return partial(_score_rows, predictor)

    def _on_alerts(self, alerts: list[Alert]) -> None:
        if self.sender is not None:
            self.sender.notify()

    def _commit(self, items: list[Item], rows: list) -> tuple[int, list[Alert]]:
        with self._write:
            new = {i.id for i in self.ingester.new_items(items)}
            first = {}
            for k, item in enumerate(items):
                first.setdefault(item.id, k)
            keep = [k for i, k in first.items() if i in new]
            probs = np.asarray([rows[k] for k in keep], dtype=np.float32).reshape(len(keep), len(self.ingester.polarity.labels))
            out = self.ingester.commit([items[k] for k in keep], probs)
        return out.inserted, out.alerts

    # ------------------------------------------------------------------------------------ routes

    async def post_items(self, request: Request) -> Response:
        batcher = batcher_or_503(request, self.name)
        req = await read_json(request, schemas.ItemsRequest, expected='"items": [{"id", "timestamp", "text", "entity"?, "source"?}, ...]')
        items = [Item(i.id, parse_ms(i.timestamp), i.timestamp, i.text, i.entity, i.source) for i in req.items]
        rows = await run_batch(request, batcher, [i.text for i in items])
        inserted, raised = await asyncio.to_thread(self._commit, items, rows)
        alerts = [{"key": a.key, "entity": a.entity, "window": a.window, "start": format_ms(a.start), "start_ms": a.start,
                   "rule": a.rule, "value": a.value, "threshold": a.threshold, "n": a.n, "message": a.message}
                  for a in raised]
        return _json({"inserted": inserted, "duplicates": len(items) - inserted, "alerts": alerts})

    async def get_index(self, entity: Entity, window: Annotated[str, Query(min_length=1, max_length=16, description="A window this server keeps, e.g. 1h.")],
                        since: When = None, until: When = None,
                        cursor: Annotated[int, Query(ge=-MS_BOUND, le=MS_BOUND, description="next_cursor of the previous page.")] = None,
                        limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> Response:
        self._window_or_404(window)
        points = await asyncio.to_thread(self.store.index_points, entity, window, since=_ms("since", since),
                                         until=_ms("until", until), after=cursor, limit=limit)
        for p in points:
            p["start"] = format_ms(p["start_ms"])
        return _json({"entity": entity, "window": window, "points": points,
                      "next_cursor": points[-1]["start_ms"] if len(points) == limit else None})

    async def get_items(self, entity: OptionalEntity = None,
                        cursor: Annotated[str, Query(pattern=schemas.ITEMS_CURSOR, description="next_cursor of the previous page.")] = None,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> Response:
        before = None
        if cursor is not None:
            ts, ident = cursor.split(":", 1)
            before = (int(ts), ident)
        rows = await asyncio.to_thread(self.store.latest_items, entity, before=before, limit=limit)
        next_cursor = f"{rows[-1]['ts']}:{rows[-1]['id']}" if len(rows) == limit else None
        for r in rows:
            del r["ts"]
        return _json({"items": rows, "next_cursor": next_cursor})

    async def get_alerts(self, entity: OptionalEntity = None,
                         cursor: Annotated[int, Query(ge=1, le=MS_BOUND, description="next_cursor of the previous page.")] = None,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> Response:
        rows = await asyncio.to_thread(self.store.alerts, entity, before=cursor, limit=limit)
        return _json({"alerts": [_alert_out(a) for a in rows], "next_cursor": rows[-1]["id"] if len(rows) == limit else None})

    async def get_entities(self, window: Annotated[str, Query(min_length=1, max_length=16)] = None,
                           limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> Response:
        window = window or self.index.spans[0].label
        self._window_or_404(window)
        rows = await asyncio.to_thread(self.store.entities, window, limit)
        return _json({"window": window, "windows": [w.label for w in self.index.spans],
                      "entities": [{"entity": r["entity"], "items": r["items"], "last": format_ms(r["last_ms"])} for r in rows]})

    async def dashboard(self) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def static(self, name: str) -> Response:
        if name not in STATIC_FILES:
            raise APIError(404, "not_found", f"no file {name!r}")
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers={"Cache-Control": "max-age=3600"})

    def _window_or_404(self, window: str) -> None:
        if self.index.window(window) is None:
            raise APIError(404, "not_found", f"no window {window!r}: this server keeps "
                           f"{', '.join(w.label for w in self.index.spans)} (--windows)")


def _score_rows(predictor, texts: list[str]) -> list:
    """The batch function: one row of class probabilities per text."""
    return list(predictor.scores(texts).probabilities)


def _json(body: dict) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")
