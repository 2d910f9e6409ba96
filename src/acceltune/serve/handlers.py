"""The steps of a batch-backed route handler, shared by every route: find the batcher, read and validate
the body (bounded), queue the inputs, await their results; each refusal is an APIError with the
documented status. The handler does as little as possible on the event loop.

    batcher = batcher_or_503(request, "classify")
    req = await read_json(request, ClassifyRequest, expected='"inputs": "text" or ["text", ...]')
    results = await run_batch(request, batcher, inputs)
"""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from acceltune.serve.batcher import Batcher, Draining, InferenceFailed, QueueFull, RequestTimeout
from acceltune.serve.errors import APIError
from acceltune.serve.refusals import not_ready, queue_full
from acceltune.serve.state import ServeState

Model = TypeVar("Model", bound=BaseModel)


def serve_state(request: Request) -> ServeState:
    return request.app.state.serve


def batcher_or_503(request: Request, name: str) -> Batcher:
    st = serve_state(request)
    batcher = st.batchers.get(name)
    if batcher is None:
        raise not_ready(st)
    return batcher


async def read_body(request: Request, limit: int) -> bytes | None:
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


async def read_json(request: Request, model: type[Model], *, expected: str) -> Model:
    """The body validated by ``model`` straight from its bytes (pydantic-core in one pass, several times cheaper
    than FastAPI's generic body handling); 413 beyond --max-payload-bytes, 422 naming ``expected`` otherwise."""
    limit = serve_state(request).settings.max_payload_bytes
    body = await read_body(request, limit)
    if body is None:
        raise APIError(413, "payload_too_large", f"the request body is larger than {limit} bytes",
                       limit="--max-payload-bytes", max=limit)
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        errors = e.errors(include_url=False, include_context=False, include_input=False)
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise APIError(422, "invalid_request", f"{where}: {first['msg']} (expected {expected})", errors=errors) from None


async def run_batch(request: Request, batcher: Batcher, inputs: list) -> list:
    """The results of ``inputs``, in order, from ``batcher``: 413 beyond --max-inputs, 429 when its queue is
    full, 503 while shutting down, 504 past --request-timeout-s, 500 if the batch function failed."""
    st = serve_state(request)
    s = st.settings
    if len(inputs) > s.max_inputs:
        raise APIError(413, "too_many_inputs", f"{len(inputs)} inputs in one request; at most {s.max_inputs}",
                       limit="--max-inputs", max=s.max_inputs)
    try:
        future = batcher.submit(inputs, s.request_timeout_s)
    except QueueFull:
        raise queue_full(st, batcher) from None
    except Draining:
        raise not_ready(st) from None
    try:
        return await future
    except RequestTimeout:
        st.metrics.rejected.labels("timeout").inc()
        raise APIError(504, "timeout", f"not answered within {s.request_timeout_s:g} s",
                       limit="--request-timeout-s", max=s.request_timeout_s) from None
    except InferenceFailed as e:
        raise APIError(500, "inference_failed", str(e)) from None
