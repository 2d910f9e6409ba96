"""Probes and metrics, never authenticated: /healthz (liveness), /readyz (readiness), /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from acceltune.serve.handlers import serve_state
from acceltune.serve.refusals import not_ready
from acceltune.serve.schemas import ErrorResponse

router = APIRouter(tags=["probes"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/readyz", summary="Readiness: 200 once the model is loaded, 503 while loading or shutting down",
            responses={503: {"model": ErrorResponse}})
async def readyz(request: Request) -> Response:
    st = serve_state(request)
    if st.ready:
        return Response(b'{"status":"ready"}', media_type="application/json")
    return not_ready(st).response()


@router.get("/metrics", summary="Prometheus metrics (not authenticated)", response_class=Response)
async def metrics(request: Request) -> Response:
    body, content_type = serve_state(request).metrics.exposition()
    return Response(body, media_type=content_type)
