"""An application route on the shared server: a second router with its own batch function gets auth,
limits, load shedding, metrics and the drain from create_app, without copying any of it."""

from __future__ import annotations

import asyncio
import threading
from contextlib import asynccontextmanager

import httpx
import orjson
import pytest
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from acceltune.serve import ClassifyRoutes, ServeSettings, create_app, start_batcher
from acceltune.serve.handlers import batcher_or_503, read_json, run_batch

KEY = {"Authorization": "Bearer k1"}


class UpperRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[str] = Field(min_length=1)


class Upper:
    """A tiny application: POST /v1/upper upper-cases texts in batches; ``gate`` holds every batch."""

    def __init__(self):
        self.gate, self.entered, self.batches = threading.Event(), threading.Event(), []
        self.gate.set()
        self.router = APIRouter(lifespan=self.lifespan)
        self.router.add_api_route("/v1/upper", self.upper, methods=["POST"])

    def batch(self, texts: list[str]) -> list[str]:
        self.entered.set()
        assert self.gate.wait(30)
        self.batches.append(list(texts))
        return [t.upper() for t in texts]

    @asynccontextmanager
    async def lifespan(self, app: FastAPI):
        start_batcher(app.state.serve, "upper", lambda: self.batch, paths=["/v1/upper"])
        yield

    async def upper(self, request: Request) -> Response:
        batcher = batcher_or_503(request, "upper")
        req = await read_json(request, UpperRequest, expected='"inputs": ["text", ...]')
        return Response(orjson.dumps({"results": await run_batch(request, batcher, req.inputs)}),
                        media_type="application/json")


async def until(condition, what: str):
    for _ in range(4000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{what} not reached")


def sample(app, name: str, labels: dict) -> float:
    return app.state.serve.metrics.registry.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def serving(app: FastAPI):
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=30) as c:
            await until(lambda: app.state.serve.ready, "ready")
            yield c


def test_a_second_router_gets_auth_limits_shedding_and_metrics(tmp_path):
    upper = Upper()
    s = ServeSettings(model_dir=tmp_path, max_queue=2, max_inputs=2, max_payload_bytes=200, max_wait_ms=0,
                      max_batch_size=1, batch_workers=1, api_keys=("k1",))  # one worker: the gated batch holds the queue
    app = create_app(s, routers=[upper.router])

    async def main():
        async with serving(app) as c:
            out = {
                "anonymous": await c.post("/v1/upper", json={"inputs": ["a"]}),
                "ok": await c.post("/v1/upper", json={"inputs": ["a", "b"]}, headers=KEY),
                "too_many": await c.post("/v1/upper", json={"inputs": ["a", "b", "c"]}, headers=KEY),
                "too_big": await c.post("/v1/upper", json={"inputs": ["x" * 300]}, headers=KEY),
                "invalid": await c.post("/v1/upper", json={"inputs": []}, headers=KEY),
                "docs_anonymous": await c.get("/openapi.json"),
                "metrics": await c.get("/metrics"),
            }
            upper.gate.clear()
            upper.entered.clear()
            first = asyncio.create_task(c.post("/v1/upper", json={"inputs": ["held"]}, headers=KEY))
            await until(upper.entered.is_set, "first batch running")
            second = asyncio.create_task(c.post("/v1/upper", json={"inputs": ["q1", "q2"]}, headers=KEY))
            await until(lambda: app.state.serve.batchers["upper"].queued_inputs == 2, "queue full")
            out["shed"] = await c.post("/v1/upper", content=b"{not json", headers=KEY)  # refused before parsing
            out["shed_anonymous"] = await c.post("/v1/upper", json={"inputs": ["a"]})  # still asked for the key
            upper.gate.set()
            out["first"], out["second"] = await first, await second
            return out

    r = asyncio.run(main())
    assert r["anonymous"].status_code == 401 and r["anonymous"].headers["www-authenticate"] == "Bearer"
    assert r["docs_anonymous"].status_code == 401
    assert r["ok"].status_code == 200 and r["ok"].json() == {"results": ["A", "B"]}
    assert r["too_many"].status_code == 413 and r["too_many"].json()["error"]["limit"] == "--max-inputs"
    assert r["too_big"].status_code == 413 and r["too_big"].json()["error"]["limit"] == "--max-payload-bytes"
    assert r["invalid"].status_code == 422 and '"inputs": ["text", ...]' in r["invalid"].json()["error"]["message"]
    assert r["metrics"].status_code == 200  # probes stay open
    assert r["shed"].status_code == 429 and r["shed"].headers["retry-after"] == "1"
    assert r["shed"].json()["error"] == {"type": "queue_full", "limit": "--max-queue", "max": 2,
                                         "message": "the server is at capacity (2 inputs queued): retry later"}
    assert r["shed_anonymous"].status_code == 401
    assert r["first"].json() == {"results": ["HELD"]} and r["second"].json() == {"results": ["Q1", "Q2"]}
    # max_batch_size=1 input per batch, but a request is never split: ["a", "b"] ran as one batch.
    assert upper.batches == [["a", "b"], ["held"], ["q1", "q2"]]
    assert sample(app, "acceltune_http_requests_total", {"path": "/v1/upper", "status": "200"}) == 3
    assert sample(app, "acceltune_http_requests_total", {"path": "/v1/upper", "status": "429"}) == 1
    assert sample(app, "acceltune_rejected_requests_total", {"reason": "queue_full"}) == 1
    assert sample(app, "acceltune_batch_size_count", {"batcher": "upper"}) == 3
    assert sample(app, "acceltune_inputs_total", {"batcher": "upper"}) == 5
    assert sample(app, "acceltune_batch_requests_sum", {"batcher": "upper"}) == 3


def test_shutdown_drains_every_batcher_without_waiting_out_the_window(tmp_path):
    """Requests queued behind a batching window longer than the test are answered by the drain alone."""
    upper = Upper()
    app = create_app(ServeSettings(model_dir=tmp_path, max_wait_ms=600_000, max_batch_size=64, request_timeout_s=600,
                                   batch_workers=1), routers=[upper.router])  # one worker: the drain makes one batch
    st = app.state.serve

    async def main():
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=30) as c:
            await until(lambda: st.ready, "ready")
            tasks = [asyncio.create_task(c.post("/v1/upper", json={"inputs": [f"m{i}"] * (1 + i % 2)})) for i in range(6)]
            await until(lambda: st.batchers["upper"].queued_inputs == 9, "all queued")
            assert not any(t.done() for t in tasks) and upper.batches == []
            await lifespan.__aexit__(None, None, None)  # what uvicorn runs after SIGTERM
            return [await t for t in tasks], await c.get("/readyz")

    responses, readyz = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * 6
    assert [r.json()["results"] for r in responses] == [[f"M{i}"] * (1 + i % 2) for i in range(6)]
    assert upper.batches == [[x for i in range(6) for x in [f"m{i}"] * (1 + i % 2)]]  # one batch, in order
    assert readyz.status_code == 503 and readyz.json()["error"]["type"] == "shutting_down"


def test_two_routers_side_by_side_each_with_its_own_batcher(tiny_model_dir):
    from acceltune.inference.predictor import Predictor

    predictor = Predictor(tiny_model_dir, backend="torch", device="cpu")
    upper = Upper()
    app = create_app(ServeSettings(model_dir=tiny_model_dir),
                     routers=[ClassifyRoutes(tiny_model_dir, predictor_factory=lambda s: predictor).router, upper.router])

    async def main():
        async with serving(app) as c:
            return (await c.post("/v1/classify", json={"inputs": "hello"}), await c.post("/v1/upper", json={"inputs": ["x"]}),
                    (await c.get("/openapi.json")).json())

    classify, up, schema = asyncio.run(main())
    assert classify.status_code == 200 and classify.json()["results"][0]["label"] == predictor.predict(["hello"])[0]["label"]
    assert up.json() == {"results": ["X"]}
    assert set(app.state.serve.batchers) == {"classify", "upper"}
    assert {"/v1/classify", "/v1/model", "/v1/upper", "/healthz"} <= set(schema["paths"])


def test_two_batchers_cannot_share_a_name(tmp_path):
    upper, again = Upper(), Upper()
    app = create_app(ServeSettings(model_dir=tmp_path), routers=[upper.router, again.router])

    async def main():
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(ValueError, match="upper"):
        asyncio.run(main())


def test_every_server_command_takes_its_inference_threads_from_acceltune_threads(monkeypatch):
    import argparse

    from acceltune.errors import UserError
    from acceltune.serve import add_server_arguments, settings_from_args

    p = argparse.ArgumentParser()
    add_server_arguments(p)
    args = p.parse_args([])
    monkeypatch.delenv("ACCELTUNE_THREADS", raising=False)
    assert settings_from_args(args, model_dir="m").threads is None  # every usable core
    monkeypatch.setenv("ACCELTUNE_THREADS", "3")
    assert settings_from_args(args, model_dir="m").threads == 3
    assert settings_from_args(args, model_dir="m", threads=1).threads == 1  # a caller's count wins
    monkeypatch.setenv("ACCELTUNE_THREADS", "many")
    with pytest.raises(UserError, match="ACCELTUNE_THREADS='many' is not a number"):
        settings_from_args(args, model_dir="m")
