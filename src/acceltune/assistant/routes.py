"""POST /v1/reply on the shared server: the message goes through the generic batcher, whose batch function
classifies a batch of messages, applies the hand-off policy and stores the turns in one transaction.

Everything else a route needs (API keys, limits, load shedding, metrics, drain) comes from create_app.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Callable, NamedTuple

import orjson
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from acceltune import ModelInfo, UserError
from acceltune.assistant.policy import decide
from acceltune.assistant.replies import Replies
from acceltune.assistant.schemas import ReplyResponse, context_values, request_model
from acceltune.assistant.store import PURGE_EVERY_S, ConversationStore, Turn, utcnow
from acceltune.serve import (ErrorResponse, Staged, batcher_or_503, json_body, load_predictor, read_json, run_batch,
                             start_batcher)

log = logging.getLogger("acceltune.assistant")
ONE_PROCESS = "the assistant decides each conversation's turns in order within one process"

BATCHER = "reply"
PATH = "/v1/reply"
ERRORS = {status: {"model": ErrorResponse} for status in (401, 413, 422, 429, 500, 503, 504)}


class ReplyInput(NamedTuple):
    message: str
    conversation_id: str
    context: dict[str, str]


#: Batches decided but not yet stored; the batcher waits beyond this (a database slower than the model).
MAX_PENDING_WRITES = 2


class ReplyBatches(Staged):
    """The batch function: one answer per message, in order, answered once the batch's turns are stored (one
    transaction). The model runs on any batch worker (``prepare``); the decisions run one batch at a time in
    the order the batches were formed (``finish``), so a conversation's turns are decided in arrival order.
    The commit runs on a writer thread beside the next batch (commits stay in order). A turn's
    low-confidence streak is read from the database, or from the batches still being stored."""

    def __init__(self, predictor, replies: Replies, store: ConversationStore):
        self.predictor, self.replies, self.store = predictor, replies, store
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="acceltune-assistant-store")
        self._room = threading.Semaphore(MAX_PENDING_WRITES)
        self._lock = threading.Lock()
        self._unstored: dict[str, tuple[int, int]] = {}  # conversation -> (streak, batch) of batches not committed yet
        self._batches = 0

    def prepare(self, inputs: list[ReplyInput]) -> tuple[list[ReplyInput], list[dict]]:
        return inputs, self.predictor.predict([x.message for x in inputs])

    def finish(self, state: tuple[list[ReplyInput], list[dict]]) -> Future:
        inputs, predictions = state
        ids = {x.conversation_id for x in inputs}
        with self._lock:
            streaks = {cid: self._unstored[cid][0] for cid in ids if cid in self._unstored}
        # Every conversation with an uncommitted turn is in _unstored (added below before its write is queued,
        # removed after its commit), so the database holds the latest streak of the others.
        if len(streaks) < len(ids):
            streaks.update(self.store.streaks(ids - streaks.keys()))
        answers, turns = [], []
        for x, prediction in zip(inputs, predictions):
            d = decide(self.replies, prediction, streaks.get(x.conversation_id, 0))
            streaks[x.conversation_id] = d.streak
            reply = self.replies.render(d.template, x.context)
            answers.append({"intent": d.intent, "confidence": d.confidence, "oos": d.oos, "reply": reply,
                            "handoff": d.handoff, "reason": d.reason})
            turns.append(Turn(x.conversation_id, x.message, x.context, prediction["label"], d.intent, d.confidence, d.oos,
                              prediction.get("oos_score"), d.low_confidence, d.handoff, d.reason, reply, d.streak))
        self._batches += 1
        batch = self._batches
        self._room.acquire()
        with self._lock:
            self._unstored.update((cid, (streaks[cid], batch)) for cid in ids)
        return self._writer.submit(self._store, turns, answers, batch, ids)

    def _store(self, turns: list[Turn], answers: list[dict], batch: int, ids: set[str]) -> list[dict]:
        try:
            self.store.record(turns, utcnow())
        finally:  # stored or not, the database is what the next batches must read for these conversations
            with self._lock:
                for cid in ids:
                    if self._unstored.get(cid, (0, 0))[1] == batch:
                        del self._unstored[cid]
            self._room.release()
        return answers


class AssistantRoutes:
    """The assistant's API router over one model directory, its replies and its store."""

    def __init__(self, model_dir, replies: Replies, store: ConversationStore, *,
                 predictor_factory: Callable = load_predictor, purge_every_s: float = PURGE_EVERY_S):
        info = ModelInfo.load(model_dir)  # cheap (acceltune.json): fail before binding the port
        if info.text_pair:
            raise UserError(f"{model_dir} classifies text pairs; the assistant needs a model of single messages")
        self.replies, self.store = replies, store
        self.predictor_factory = predictor_factory
        self.purge_every_s = purge_every_s
        self.request_model = request_model(replies.slots)
        slots = ", ".join(replies.slots) or "none declared"
        self.expected = (f'"message": text, "conversation_id": text (1-128 characters), optional "context": '
                         f'{{slot: text}} with slots {slots}')
        self.router = APIRouter(lifespan=self.lifespan)
        self.router.add_api_route(PATH, self.reply, methods=["POST"], response_model=ReplyResponse, responses=ERRORS,
                                  summary="Answer one customer message: intent, reply, and whether to hand off",
                                  openapi_extra=json_body(self.request_model))

    @asynccontextmanager
    async def lifespan(self, app: FastAPI):
        st = app.state.serve
        start_batcher(st, BATCHER, partial(self._load, st.settings.one_process(ONE_PROCESS)), paths=[PATH])
        purging = asyncio.create_task(self._purge_periodically(), name="assistant-purge")
        try:
            yield
        finally:
            purging.cancel()
            with suppress(asyncio.CancelledError):
                await purging

    def _load(self, settings):
        predictor = self.predictor_factory(settings)
        predictor.predict(["warm up"])  # one-off initialisation before the first real message
        return ReplyBatches(predictor, self.replies, self.store)

    async def _purge_periodically(self) -> None:
        while True:
            try:
                deleted = await asyncio.to_thread(self.store.purge)
            except Exception:  # noqa: BLE001 - a failed purge is retried next time; serving goes on
                log.exception("purging old conversations failed")
            else:
                if deleted:
                    log.info("deleted %d turn(s) past retention", deleted)
            await asyncio.sleep(self.purge_every_s)

    async def reply(self, request: Request) -> Response:
        batcher = batcher_or_503(request, BATCHER)
        req = await read_json(request, self.request_model, expected=self.expected)
        [answer] = await run_batch(request, batcher, [ReplyInput(req.message, req.conversation_id,
                                                                  context_values(req.context))])
        return Response(orjson.dumps(answer), media_type="application/json")

