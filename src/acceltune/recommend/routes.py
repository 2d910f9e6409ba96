"""POST /v1/recommend, POST /v1/events and GET /v1/recommender on the shared server stack.

Recommendations run through a batcher called "recommend" (one encoder pass for every request in a batch, by
PyTorch for a trained model directory, by ONNX Runtime for an export);
events go to the EventStore on a worker thread. A user's history = what training knew of them, then their
stored events; a request's "history" is appended after that.
"""

from __future__ import annotations

import asyncio
import math
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Literal, Optional

import orjson
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StringConstraints
from starlette.responses import Response

from acceltune import ModelInfo
from acceltune.recommend.recommender import Query, Recommender
from acceltune.recommend.store import EventStore
from acceltune.serve import ErrorResponse, batcher_or_503, json_body, read_json, run_batch, start_batcher

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
MAX_HISTORY = 1000
MAX_K = 1000


def _json_integer(value):
    if isinstance(value, (str, bool)):
        raise ValueError("Input should be a valid integer")
    return value


def _json_number(value):
    if isinstance(value, (str, bool)) or not isinstance(value, (int, float)):
        raise ValueError("Input should be a valid number")
    if not math.isfinite(value):
        raise ValueError("Input should be a finite number")
    return float(value)


Integer = Annotated[int, BeforeValidator(_json_integer)]
Number = Annotated[float, BeforeValidator(_json_number)]


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Optional[Id] = Field(None, description="A user: their history from training and posted events is used.")
    history: list[Id] = Field([], max_length=MAX_HISTORY, description="Item ids, oldest first (after the user's stored "
                              "history, if user_id is given). Unknown items are skipped and reported.")
    k: Integer = Field(10, ge=1, le=MAX_K, description="How many items to return, best first.")
    exclude_seen: StrictBool = Field(True, description="Leave out items already in the history.")
    exclude: list[Id] = Field([], max_length=MAX_HISTORY, description="Item ids never to return.")


class ItemScore(BaseModel):
    item_id: str
    score: float


class RecommendResponse(BaseModel):
    items: list[ItemScore] = Field(description="Best first; fewer than k when the catalogue runs out.")
    strategy: Literal["sequence", "popular_and_fresh"] = Field(
        description="sequence: scored by the model from the history; popular_and_fresh: no usable history (an unknown "
                    "user, or only unknown items), so recently popular items then newly added ones.")
    user_known: bool = Field(description="user_id was given and has a history (training or posted events).")
    history_length: int = Field(description="Known items in the history used.")
    unknown_items: list[str] = Field(description="History items not in the catalogue (skipped).")


class EventRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Id
    item_id: Id
    timestamp: Number = Field(description="Unix time (any number ordering the user's events).")


class EventResponse(BaseModel):
    stored: bool = Field(description="false: the same (user_id, item_id, timestamp) was stored before (kept once).")
    known_item: bool = Field(description="The item is in the catalogue (an unknown one is stored, and used once added).")


class RecommenderResponse(BaseModel):
    items: int
    users: int
    objective: str
    text: bool = Field(description="Items are scored from their text too (cold items can be added).")
    backend: Literal["torch", "onnx"] = Field(description="torch: a trained model directory; onnx: its export, run by ONNX Runtime.")
    version: str


ERRORS = {status: {"model": ErrorResponse} for status in (401, 413, 422, 429, 503, 504)}


def recommend_batch(recommender: Recommender, queries: list[Query]) -> list[dict]:
    return [{"items": [{"item_id": i, "score": s} for i, s in zip(a.items, a.scores)], "strategy": a.strategy,
             "unknown_items": a.unknown_items}
            for a in recommender.recommend(queries)]


class RecommendRoutes:
    def __init__(self, model_dir: str | Path, db_url: str, name: str = "recommend"):
        self.model_dir = Path(model_dir)
        self.db_url = db_url
        self.name = name
        self.recommender: Recommender | None = None
        self.store: EventStore | None = None
        self.router = APIRouter(lifespan=self.lifespan)
        self.router.add_api_route("/v1/recommend", self.recommend, methods=["POST"], response_model=RecommendResponse,
                                  summary="Top-k items for a user or a history", responses=ERRORS,
                                  openapi_extra=json_body(RecommendRequest))
        self.router.add_api_route("/v1/events", self.event, methods=["POST"], response_model=EventResponse,
                                  summary="Record an interaction; the user's next recommendation reflects it",
                                  responses={s: {"model": ErrorResponse} for s in (401, 413, 422, 503)},
                                  openapi_extra=json_body(EventRequest))
        self.router.add_api_route("/v1/recommender", self.describe, methods=["GET"], response_model=RecommenderResponse,
                                  summary="The served recommender", responses={503: {"model": ErrorResponse}})

    @asynccontextmanager
    async def lifespan(self, app: FastAPI):
        threads = app.state.serve.settings.inference_threads  # per batch worker (as acceltune serve's)
        start_batcher(app.state.serve, self.name, partial(self._load, threads), paths=["/v1/recommend"])
        try:
            yield
        finally:
            if self.store is not None:
                self.store.close()

    def _load(self, threads: int | None):
        self.store = EventStore(self.db_url)
        recommender = Recommender(self.model_dir, threads)
        recommender.recommend([Query(history=recommender.catalogue.items[:1]), Query(history=[])])  # warm up
        self.recommender = recommender
        self.version = ModelInfo.load(self.model_dir).version
        return partial(recommend_batch, recommender)

    async def recommend(self, request: Request) -> Response:
        batcher = batcher_or_503(request, self.name)
        req = await read_json(request, RecommendRequest, expected='"user_id": "id" and/or "history": ["item", ...], '
                              'optional "k": 1..1000, "exclude_seen": bool, "exclude": ["item", ...]')
        stored: list[str] = []
        if req.user_id is not None:
            stored = self.recommender.user_history(req.user_id) + await asyncio.to_thread(self.store.history, req.user_id)
        history = stored + list(req.history)
        [result] = await run_batch(request, batcher, [Query(history, req.k, req.exclude_seen, list(req.exclude))])
        result["user_known"] = bool(stored)
        result["history_length"] = len(history) - len(result["unknown_items"])
        return Response(orjson.dumps(result), media_type="application/json")

    async def event(self, request: Request) -> Response:
        batcher_or_503(request, self.name)  # the store opens with the model
        req = await read_json(request, EventRequest, expected='"user_id": "id", "item_id": "id", "timestamp": number')
        stored = await asyncio.to_thread(self.store.add, req.user_id, req.item_id, req.timestamp)
        known = req.item_id in self.recommender.catalogue.item_index
        return Response(orjson.dumps({"stored": stored, "known_item": known}), media_type="application/json")

    async def describe(self, request: Request) -> Response:
        batcher_or_503(request, self.name)
        r = self.recommender
        return Response(orjson.dumps({"items": r.num_items, "users": len(r.catalogue.users),
                                      "objective": r.config.objective, "text": bool(r.config.text_dim),
                                      "backend": r.backend, "version": self.version}), media_type="application/json")
