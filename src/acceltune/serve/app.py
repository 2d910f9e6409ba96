"""The app factory: ``create_app(settings)`` returns a FastAPI app that loads the model once, in its lifespan.

Startup does not wait for the model: the server listens at once, /healthz answers 200 and /readyz 503
until a background thread has loaded and warmed up the model (a slow load never makes the process
look dead to an orchestrator). Shutdown (uvicorn, after SIGTERM, has stopped accepting connections
and waited for every in-flight request) closes the batcher, which first finishes everything queued.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Callable

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException

from acceltune import __version__
from acceltune.modeldir import ModelInfo
from acceltune.serve.batcher import Batcher, lower_thread_priority
from acceltune.serve.errors import APIError, error_response
from acceltune.serve.metrics import Metrics, MetricsMiddleware
from acceltune.serve.routes import DOCS_STATIC, api, probes, require_api_key
from acceltune.serve.shedding import LoadShedder
from acceltune.serve.schemas import ClassifyRequest, PairClassifyRequest
from acceltune.serve.settings import ServeSettings

log = logging.getLogger("acceltune.serve")

#: On CPU, under load, short backend calls cut from length-sorted inputs serve best: Banking77 messages,
#: onnx int8, 64 connections: 983 / 1,034 / 948 / 936 / 857 req/s at 64 / 128 / 192 / 256 / 512 padded
#: tokens per call (benchmarks/serve_load.py, docs/benchmarks.md).
CPU_BATCH_TOKENS = 128

PredictorFactory = Callable[[ServeSettings], "object"]


def default_predictor_factory(settings: ServeSettings):
    from acceltune.inference.predictor import Predictor, default_batch_tokens

    predictor = Predictor(settings.model_dir, backend=settings.backend, device=settings.device)
    predictor.max_batch_tokens = settings.max_batch_tokens or default_batch_tokens(predictor.backend, CPU_BATCH_TOKENS)
    return predictor


@dataclass
class ServeState:
    settings: ServeSettings
    info: ModelInfo
    metrics: Metrics
    request_model: type
    predictor_factory: PredictorFactory
    on_load_error: Callable[[BaseException], None] | None = None
    predictor: object | None = None
    batcher: Batcher | None = None
    ready: bool = False
    draining: bool = False
    load_error: str | None = None
    load_task: asyncio.Task | None = field(default=None, repr=False)


def _load_and_warm(st: ServeState):
    # This thread creates the backend's thread pools: at a lower priority, so do they (see lower_thread_priority).
    lower_thread_priority(st.settings.inference_nice)
    predictor = st.predictor_factory(st.settings)
    warm = ["warm up"]
    # Run every batch shape once so the first real requests do not pay one-off initialisation.
    predictor.predict(warm, warm if st.info.text_pair else None)
    return predictor


async def _load_model(st: ServeState) -> None:
    try:
        predictor = await asyncio.to_thread(_load_and_warm, st)
    except Exception as e:
        st.load_error = f"{e.__class__.__name__}: {e}"
        log.error("cannot load the model from %s: %s", st.settings.model_dir, st.load_error)
        if st.on_load_error is not None:
            st.on_load_error(e)
        return
    s = st.settings
    batcher = Batcher(predictor, max_batch_size=s.max_batch_size, max_wait_s=s.max_wait_ms / 1000.0,
                      max_queue=s.max_queue, metrics=st.metrics, nice=s.inference_nice)
    batcher.start(asyncio.get_running_loop())
    st.metrics.queue_depth.set_function(lambda: batcher.queued_inputs)
    # Everything loaded so far (libraries, model, tokenizer) lives as long as the process: move it out of the
    # collector's view, so full collections under load scan only per-request garbage (shorter pauses).
    gc.freeze()
    st.predictor, st.batcher, st.ready = predictor, batcher, True
    st.metrics.ready.set(1)
    log.info("model %s loaded (%s); ready", s.model_dir, predictor.backend.describe())


@asynccontextmanager
async def lifespan(app: FastAPI):
    st: ServeState = app.state.serve
    st.load_task = asyncio.create_task(_load_model(st))
    try:
        yield
    finally:
        st.draining = True
        st.metrics.ready.set(0)
        try:
            await st.load_task
        except BaseException:  # noqa: BLE001 - already reported by _load_model
            pass
        if st.batcher is not None:
            await st.batcher.close()  # finishes everything queued before returning
        log.info("batcher drained; stopped")


def _custom_openapi(app: FastAPI, request_model: type) -> Callable[[], dict]:
    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            body_schema = request_model.model_json_schema(ref_template="#/components/schemas/{model}")
            schema.setdefault("components", {}).setdefault("schemas", {}).update(body_schema.pop("$defs", {}))
            schema["components"]["schemas"][request_model.__name__] = body_schema
            schema["paths"]["/v1/classify"]["post"]["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{request_model.__name__}"}}},
            }
            app.openapi_schema = schema
        return app.openapi_schema
    return openapi


def create_app(settings: ServeSettings, *, predictor_factory: PredictorFactory | None = None,
               on_load_error: Callable[[BaseException], None] | None = None) -> FastAPI:
    """A FastAPI app serving ``settings.model_dir``. Raises UserError at once if that is no model directory."""
    info = ModelInfo.load(settings.model_dir)  # cheap (acceltune.json): fail before binding the port
    request_model = PairClassifyRequest if info.text_pair else ClassifyRequest
    app = FastAPI(title="acceltune serve", version=__version__, lifespan=lifespan,
                  description="Text classification with dynamic batching. See docs/serving.md.",
                  docs_url=None, redoc_url=None, openapi_url=None)
    metrics = Metrics()
    app.state.serve = ServeState(settings=settings, info=info, metrics=metrics, request_model=request_model,
                                 predictor_factory=predictor_factory or default_predictor_factory,
                                 on_load_error=on_load_error)
    app.state.docs_static = _mount_swagger_ui(app)
    app.include_router(probes)
    app.include_router(api, dependencies=[Depends(require_api_key)] if settings.api_keys else [])
    app.add_middleware(LoadShedder, state=app.state.serve)  # added first: runs inside MetricsMiddleware
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.openapi = _custom_openapi(app, request_model)

    app.add_exception_handler(APIError, lambda request, exc: exc.response())
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, lambda request, exc: error_response(
        422, "invalid_request", "invalid request", errors=[{k: e.get(k) for k in ("loc", "msg", "type")} for e in exc.errors()]))
    app.add_exception_handler(Exception, lambda request, exc: error_response(500, "internal_error", f"{exc.__class__.__name__}"))
    return app


def _mount_swagger_ui(app: FastAPI) -> bool:
    """Serve Swagger UI's files from the swagger-ui-bundle package, so /docs renders without internet."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return False
    from starlette.staticfiles import StaticFiles

    app.mount(DOCS_STATIC, StaticFiles(directory=str(swagger_ui_path)), name="docs-static")
    return True


def _http_exception(request, exc: StarletteHTTPException):
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, kind, str(exc.detail), headers=getattr(exc, "headers", None))
