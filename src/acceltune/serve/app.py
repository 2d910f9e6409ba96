"""The app factory: ``create_app(settings, routers=[...])`` returns a FastAPI app in which every route gets
the shared state, API-key auth, limits, load shedding, metrics and SIGTERM drain.

An application adds its own APIRouter(s): a router starts its batchers from its lifespan
(acceltune.serve.lifespan.start_batcher, which also declares the paths shed while a batcher is full)
and its handlers use acceltune.serve.handlers. Without ``routers`` the app serves /v1/classify and
/v1/model over ``settings.model_dir`` (routes/classify.py). ``pages`` are routers served without the API
key, like the probes: static pages that hold no data and whose scripts send the key the user gives them.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

from fastapi import APIRouter, Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from acceltune import __version__
from acceltune.serve.auth import require_api_key
from acceltune.serve.errors import APIError, error_response
from acceltune.serve.lifespan import lifespan
from acceltune.serve.metrics import Metrics, MetricsMiddleware
from acceltune.serve.openapi import openapi_schema
from acceltune.serve.routes import docs, probes
from acceltune.serve.settings import ServeSettings
from acceltune.serve.shedding import LoadShedder
from acceltune.serve.state import ServeState


def create_app(settings: ServeSettings, routers: Sequence[APIRouter] | None = None, *,
               pages: Sequence[APIRouter] = (),
               on_load_error: Callable[[BaseException], None] | None = None,
               title: str = "acceltune serve",
               description: str = "Text classification with dynamic batching. See docs/serving.md.") -> FastAPI:
    """A FastAPI app serving ``routers`` (default: classify over ``settings.model_dir``, which raises UserError at
    once if that is no model directory). ``on_load_error`` is called if a router's model fails to load."""
    if routers is None:
        from acceltune.serve.routes.classify import ClassifyRoutes

        routers = [ClassifyRoutes(settings.model_dir).router]
    app = FastAPI(title=title, version=__version__, description=description, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    metrics = Metrics()
    app.state.serve = ServeState(settings=settings, metrics=metrics, on_load_error=on_load_error)
    auth = [Depends(require_api_key)] if settings.api_keys else []
    for page in (probes.router, *pages):
        app.include_router(page)
    for router in routers:
        app.include_router(router, dependencies=auth)
    app.include_router(docs.router, dependencies=auth)
    docs.mount_swagger_ui(app)
    app.openapi = partial(openapi_schema, app)  # what /openapi.json serves, for anyone calling app.openapi()
    paths = frozenset(r.path for router in (probes.router, *pages, *routers, docs.router) for r in router.routes if hasattr(r, "path"))
    app.add_middleware(LoadShedder, state=app.state.serve)  # added first: runs inside MetricsMiddleware
    app.add_middleware(MetricsMiddleware, metrics=metrics, paths=paths)

    app.add_exception_handler(APIError, lambda request, exc: exc.response())
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, lambda request, exc: error_response(
        422, "invalid_request", "invalid request", errors=[{k: e.get(k) for k in ("loc", "msg", "type")} for e in exc.errors()]))
    app.add_exception_handler(Exception, lambda request, exc: error_response(500, "internal_error", f"{exc.__class__.__name__}"))
    return app


def _http_exception(request, exc: StarletteHTTPException):
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, kind, str(exc.detail), headers=getattr(exc, "headers", None))
