"""HTTP routes. Two routers: ``probes`` (never authenticated: /healthz, /readyz, /metrics) and ``api``
(/v1/*, /docs, /openapi.json: Bearer token required when the server has API keys).

Handlers reach the server's state through ``request.app.state.serve`` (a ServeState). The classify
handler does as little as possible on the event loop: read the body (bounded), validate it with
pydantic-core in one pass, queue it, await the batch result, write it with orjson.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.responses import HTMLResponse, JSONResponse, Response

from acceltune.serve.batcher import Draining, InferenceFailed, InputTooLong, QueueFull, RequestTimeout
from acceltune.serve.errors import APIError, error_response
from acceltune.serve.schemas import ClassifyResponse, ErrorResponse, ModelResponse

if TYPE_CHECKING:
    from acceltune.serve.app import ServeState

RETRY_AFTER = {"Retry-After": "1"}

probes = APIRouter(tags=["probes"])
api = APIRouter()


def _state(request: Request) -> "ServeState":
    return request.app.state.serve


def authorized(st: "ServeState", authorization: str) -> bool:
    """Whether an Authorization header value carries one of the server's keys (always true without keys)."""
    if not st.settings.api_keys:
        return True
    scheme, _, token = authorization.partition(" ")
    return scheme.lower() == "bearer" and bool(token) and st.settings.key_matches(token.strip())


def require_api_key(request: Request) -> None:
    """Dependency added to the ``api`` router when the server has keys: ``Authorization: Bearer KEY``."""
    if not authorized(_state(request), request.headers.get("authorization", "")):
        raise APIError(401, "unauthorized", "missing or wrong API key: send 'Authorization: Bearer <key>'",
                       headers={"WWW-Authenticate": "Bearer"})


def _not_ready(st: "ServeState") -> Response:
    if st.draining:
        return error_response(503, "shutting_down", "the server is shutting down", headers=RETRY_AFTER)
    if st.load_error:
        return error_response(503, "load_failed", f"the model failed to load: {st.load_error}")
    return error_response(503, "not_ready", "the model is still loading", headers=RETRY_AFTER)


# ---- probes ---------------------------------------------------------------------------------------

@probes.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@probes.get("/readyz", summary="Readiness: 200 once the model is loaded, 503 while loading or shutting down",
            responses={503: {"model": ErrorResponse}})
async def readyz(request: Request) -> Response:
    st = _state(request)
    if st.ready and not st.draining:
        return Response(b'{"status":"ready"}', media_type="application/json")
    return _not_ready(st)


@probes.get("/metrics", summary="Prometheus metrics (not authenticated)", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(_state(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


# ---- API --------------------------------------------------------------------------------------------

async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` (checked before reading when the length is declared)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _validation_error(st: "ServeState", e: ValidationError) -> Response:
    errors = e.errors(include_url=False, include_context=False, include_input=False)
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"]) or "body"
    shape = ('"inputs": [["first", "second"], ...] (this model classifies text pairs)' if st.info.text_pair
             else '"inputs": "text" or ["text", ...]')
    return error_response(422, "invalid_request", f"{where}: {first['msg']} (expected {shape}, "
                          'optional "top_k": int >= 1, "truncate": bool)', errors=errors)


def queue_full(st: "ServeState") -> Response:
    st.metrics.rejected.labels("queue_full").inc()
    limit = st.settings.max_queue
    return error_response(429, "queue_full", f"the server is at capacity ({limit} inputs queued): retry later",
                          limit="--max-queue", max=limit, headers=RETRY_AFTER)


@api.post("/v1/classify", summary="Classify one or more texts (or text pairs)", response_model=ClassifyResponse,
          responses={401: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 422: {"model": ErrorResponse},
                     429: {"model": ErrorResponse}, 503: {"model": ErrorResponse}, 504: {"model": ErrorResponse}})
async def classify(request: Request) -> Response:
    st = _state(request)
    batcher = st.batcher
    if batcher is None:
        return _not_ready(st)
    settings = st.settings
    body = await _read_body(request, settings.max_payload_bytes)
    if body is None:
        return error_response(413, "payload_too_large", f"the request body is larger than {settings.max_payload_bytes} bytes",
                              limit="--max-payload-bytes", max=settings.max_payload_bytes)
    try:
        req = st.request_model.model_validate_json(body)
    except ValidationError as e:
        return _validation_error(st, e)
    inputs = req.inputs
    if len(inputs) > settings.max_inputs:
        return error_response(413, "too_many_inputs", f"{len(inputs)} inputs in one request; at most {settings.max_inputs}",
                              limit="--max-inputs", max=settings.max_inputs)
    if st.info.text_pair:
        texts, pairs = [a for a, _ in inputs], [b for _, b in inputs]
    else:
        texts, pairs = inputs, None
    try:
        future = batcher.submit(texts, pairs, req.top_k, req.truncate, settings.request_timeout_s)
    except QueueFull:
        return queue_full(st)
    except Draining:
        return _not_ready(st)
    try:
        results = await future
    except RequestTimeout:
        st.metrics.rejected.labels("timeout").inc()
        return error_response(504, "timeout", f"not answered within {settings.request_timeout_s:g} s",
                              limit="--request-timeout-s", max=settings.request_timeout_s)
    except InputTooLong as e:
        return error_response(422, "input_too_long", str(e), limit="max_length", max=e.max_length)
    except InferenceFailed as e:
        return error_response(500, "inference_failed", str(e))
    return Response(orjson.dumps({"results": results}), media_type="application/json")


@api.get("/v1/model", summary="The served model: labels, backend, maximum length, version", response_model=ModelResponse,
         responses={503: {"model": ErrorResponse}})
async def model(request: Request) -> Response:
    st = _state(request)
    if st.predictor is None:
        return _not_ready(st)
    info, s = st.info, st.settings
    return Response(orjson.dumps({
        "labels": info.labels, "max_length": info.max_length, "text_pair": info.text_pair,
        "multi_label": info.multi_label, "format": info.format, "version": info.version,
        "backend": st.predictor.backend.describe(),
        "batching": {"max_batch_size": s.max_batch_size, "max_wait_ms": s.max_wait_ms, "max_queue": s.max_queue,
                     "max_batch_tokens": getattr(st.predictor, "max_batch_tokens", None)},
        "limits": {"max_inputs": s.max_inputs, "max_payload_bytes": s.max_payload_bytes,
                   "request_timeout_s": s.request_timeout_s},
    }), media_type="application/json")


@api.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.openapi())


#: Where /docs loads Swagger UI from: the swagger-ui-bundle package, mounted by the app (offline-safe).
DOCS_STATIC = "/docs/static"


@api.get("/docs", include_in_schema=False)
async def docs(request: Request) -> HTMLResponse:
    if not getattr(request.app.state, "docs_static", False):  # package missing: Swagger UI from its CDN
        return get_swagger_ui_html(openapi_url="/openapi.json", title="acceltune serve")
    return get_swagger_ui_html(openapi_url="/openapi.json", title="acceltune serve",
                               swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
                               swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
                               swagger_favicon_url=f"{DOCS_STATIC}/favicon-32x32.png")
