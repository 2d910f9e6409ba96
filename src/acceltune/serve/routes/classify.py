"""/v1/classify and /v1/model over one model directory: the classify batch function runs the Predictor.

``ClassifyRoutes(model_dir).router`` is what ``create_app`` serves by default. A request's results equal
``Predictor.predict`` on its inputs (the same Predictor.scores and Predictor.results).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple

import orjson
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from acceltune.modeldir import ModelInfo
from acceltune.serve.errors import APIError
from acceltune.serve.handlers import batcher_or_503, read_json, run_batch, serve_state
from acceltune.serve.lifespan import start_batcher
from acceltune.serve.metrics import BatcherMetrics
from acceltune.serve.refusals import not_ready
from acceltune.serve.schemas import ClassifyRequest, ClassifyResponse, ErrorResponse, ModelResponse, PairClassifyRequest
from acceltune.serve.openapi import json_body
from acceltune.serve.settings import ServeSettings

from acceltune.inference.batches import SERVE_CPU_BATCH_TOKENS  # the one definition, with its measurements

PredictorFactory = Callable[[ServeSettings], "object"]


def load_predictor(settings: ServeSettings):
    from acceltune.inference.predictor import Predictor, default_batch_tokens

    predictor = Predictor(settings.model_dir, backend=settings.backend, device=settings.device, threads=settings.inference_threads)
    predictor.max_batch_tokens = settings.max_batch_tokens or default_batch_tokens(predictor.backend, SERVE_CPU_BATCH_TOKENS)
    return predictor


class ClassifyInput(NamedTuple):
    text: str
    pair: str | None
    top_k: int


def classify_batch(predictor, metrics: BatcherMetrics | None, inputs: list[ClassifyInput]) -> list[dict]:
    """The classify batch function: one result dict per input, in order, as Predictor.predict gives them."""
    pairs = [x.pair for x in inputs] if inputs[0].pair is not None else None
    scored = predictor.scores([x.text for x in inputs], pairs)
    if metrics is not None:
        metrics.tokens.inc(scored.tokens)
        n_truncated = sum(scored.truncated)
        if n_truncated:
            metrics.truncated.inc(n_truncated)
    # Requests in one batch may ask for different top_k: rank once for the largest, then cut (the ranking
    # is stable, so the first k of the largest are the top k).
    results = predictor.results(scored.probabilities, scored.truncated, max(x.top_k for x in inputs), scored.oos, scored.oos_scores)
    for result, x in zip(results, inputs):
        if len(result["top_k"]) > x.top_k:
            result["top_k"] = result["top_k"][:x.top_k]
    return results


ERRORS = {status: {"model": ErrorResponse} for status in (401, 413, 422, 429, 503, 504)}


class ClassifyRoutes:
    """The classify router of one model directory; its batcher is called ``name``."""

    def __init__(self, model_dir: str | Path, *, predictor_factory: PredictorFactory = load_predictor,
                 name: str = "classify"):
        self.info = ModelInfo.load(model_dir)  # cheap (acceltune.json): fail before binding the port
        self.name = name
        self.predictor_factory = predictor_factory
        self.predictor = None
        self.request_model = PairClassifyRequest if self.info.text_pair else ClassifyRequest
        self.expected = ('"inputs": [["first", "second"], ...] (this model classifies text pairs)' if self.info.text_pair
                         else '"inputs": "text" or ["text", ...]') + ', optional "top_k": int >= 1, "truncate": bool'
        self.router = APIRouter(lifespan=self.lifespan)
        self.router.add_api_route("/v1/classify", self.classify, methods=["POST"], response_model=ClassifyResponse,
                                  summary="Classify one or more texts (or text pairs)", responses=ERRORS,
                                  openapi_extra=json_body(self.request_model))
        self.router.add_api_route("/v1/model", self.model, methods=["GET"], response_model=ModelResponse,
                                  summary="The served model: labels, backend, maximum length, version",
                                  responses={503: {"model": ErrorResponse}})

    @asynccontextmanager
    async def lifespan(self, app: FastAPI):
        st = app.state.serve
        start_batcher(st, self.name, partial(self._load, st.settings, st.metrics.for_batcher(self.name)),
                      paths=["/v1/classify"])
        yield

    def _load(self, settings: ServeSettings, metrics: BatcherMetrics):
        predictor = self.predictor_factory(settings)
        warm = ["warm up"]
        # Run every batch shape once so the first real requests do not pay one-off initialisation.
        predictor.predict(warm, warm if self.info.text_pair else None)
        self.predictor = predictor
        return partial(classify_batch, predictor, metrics)

    async def classify(self, request: Request) -> Response:
        batcher = batcher_or_503(request, self.name)
        req = await read_json(request, self.request_model, expected=self.expected)
        if self.info.text_pair:
            inputs = [ClassifyInput(a, b, req.top_k) for a, b in req.inputs]
        else:
            inputs = [ClassifyInput(t, None, req.top_k) for t in req.inputs]
        results = await run_batch(request, batcher, inputs)
        if not req.truncate:
            first = next((i for i, r in enumerate(results) if r["truncated"]), None)
            if first is not None:
                max_length = self.info.max_length
                raise APIError(422, "input_too_long", f"inputs[{first}] is longer than the model's maximum of {max_length} "
                               "tokens (send \"truncate\": true to classify its first tokens)", limit="max_length", max=max_length)
        return Response(orjson.dumps({"results": results}), media_type="application/json")

    async def model(self, request: Request) -> Response:
        st = serve_state(request)
        if self.predictor is None or self.name not in st.batchers:
            raise not_ready(st)
        info, s = self.info, st.settings
        return Response(orjson.dumps({
            "labels": info.labels, "max_length": info.max_length, "text_pair": info.text_pair,
            "multi_label": info.multi_label, "format": info.format, "version": info.version,
            "backend": self.predictor.backend.describe(),
            "batching": {"max_batch_size": s.max_batch_size, "max_wait_ms": s.max_wait_ms, "max_queue": s.max_queue,
                         "max_queue_wait_ms": s.max_queue_wait_ms, "max_batch_tokens": getattr(self.predictor, "max_batch_tokens", None)},
            "limits": {"max_inputs": s.max_inputs, "max_payload_bytes": s.max_payload_bytes,
                       "request_timeout_s": s.request_timeout_s},
            "oos": None if not info.oos else {k: info.oos[k] for k in ("score", "threshold", "goal", "label")},
        }), media_type="application/json")
