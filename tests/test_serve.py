"""The model server (acceltune.serve): API, limits, batching, back-pressure, auth, readiness, SIGTERM drain.

Most tests drive the ASGI app in-process (httpx + the app's lifespan); one starts a real
`acceltune serve` process to check that SIGTERM finishes every accepted request.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from acceltune.errors import UserError
from acceltune.inference.predictor import Predictor
from acceltune.serve import ClassifyRoutes, ServeSettings, create_app
from servers import metric

TEXTS = ["I love this movie", "this was terrible", "an ordinary afternoon", "where is my card",
         "please refund my payment", "the quick brown fox", "great service, thanks", "meh"]


@pytest.fixture(scope="module")
def predictor(tiny_model_dir) -> Predictor:
    return Predictor(tiny_model_dir, backend="torch", device="cpu")


class GatedBackend:
    """Wraps a backend: every batch waits for ``gate``; ``entered`` is set when a batch is waiting."""

    def __init__(self, inner):
        self.inner, self.gate, self.entered = inner, threading.Event(), threading.Event()
        self.input_names, self.pad_to_multiple_of, self.name = inner.input_names, inner.pad_to_multiple_of, "gated"

    def _wait(self):
        self.entered.set()
        assert self.gate.wait(30)

    def logits(self, batch):
        self._wait()
        return self.inner.logits(batch)

    def forward(self, batch):
        self._wait()
        return self.inner.forward(batch)

    def describe(self):
        return {"backend": self.name}


def gated(predictor: Predictor) -> tuple[Predictor, GatedBackend]:
    p = copy.copy(predictor)
    p.backend = GatedBackend(predictor.backend)
    return p, p.backend


@contextlib.asynccontextmanager
async def serving(settings: ServeSettings, predictor: Predictor | None, wait_ready: bool = True, **kwargs):
    factory = kwargs.pop("predictor_factory", None) or (lambda s: predictor)
    app = create_app(settings, routers=[ClassifyRoutes(settings.model_dir, predictor_factory=factory).router], **kwargs)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=30) as client:
            if wait_ready:
                await until(lambda: app.state.serve.ready, "ready")
            client.app = app
            yield client


def settings(model_dir, **kw) -> ServeSettings:
    """One batch worker unless a test asks for more: which requests share a batch is then up to the test."""
    return ServeSettings(model_dir=model_dir, **{"batch_workers": 1, **kw})


def sample(app, name: str, labels: dict | None = None) -> float:
    return app.state.serve.metrics.registry.get_sample_value(name, labels or {}) or 0.0


CLASSIFY = {"batcher": "classify"}


def queued(app) -> int:
    return app.state.serve.batchers["classify"].queued_inputs


async def until(condition, what: str = "condition"):
    """Poll ``condition`` (a real event or counter), bounded: fail rather than hang."""
    for _ in range(4000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{what} not reached")


# ------------------------------------------------------------------------------------------ batching

def test_concurrent_requests_are_batched_and_each_gets_its_own_results(tiny_model_dir, predictor):
    requests = [TEXTS[i % len(TEXTS):][:1 + i % 3] or TEXTS[:1] for i in range(24)]
    p, backend = gated(predictor)
    backend.gate.set()  # open for the warm-up

    async def main():
        async with serving(settings(tiny_model_dir, max_wait_ms=0, max_batch_size=64), p) as c:
            backend.gate.clear()
            backend.entered.clear()
            # The first request holds the worker; the others queue behind it and must run as one batch.
            first = asyncio.create_task(c.post("/v1/classify", json={"inputs": requests[0], "top_k": 2}))
            await until(backend.entered.is_set, "first batch running")
            rest = [asyncio.create_task(c.post("/v1/classify", json={"inputs": r, "top_k": 2})) for r in requests[1:]]
            await until(lambda: queued(c.app) == sum(len(r) for r in requests[1:]), "all requests queued")
            backend.gate.set()
            responses = [await first] + list(await asyncio.gather(*rest))
            single = await c.post("/v1/classify", json={"inputs": TEXTS[0]})
            return responses, single, c.app

    responses, single, app = asyncio.run(main())
    for texts, r in zip(requests, responses):
        assert r.status_code == 200, r.text
        got = r.json()["results"]
        want = predictor.predict(texts, top_k=2)
        assert [g["label"] for g in got] == [w["label"] for w in want]
        assert [[t["label"] for t in g["top_k"]] for g in got] == [[t["label"] for t in w["top_k"]] for w in want]
        for g, w in zip(got, want):
            assert g["score"] == pytest.approx(w["score"], abs=1e-4)
            assert g["truncated"] is False and len(g["top_k"]) == 2
    assert single.json()["results"][0]["label"] == predictor.predict(TEXTS[:1])[0]["label"]
    # warm-up (not counted: it runs before the batcher exists), the first request, the other 23 as one, the single.
    assert sample(app, "acceltune_batch_size_count", CLASSIFY) == 3
    assert sample(app, "acceltune_batch_size_sum", CLASSIFY) == sum(len(r) for r in requests) + 1
    assert sample(app, "acceltune_batch_requests_sum", CLASSIFY) == 25
    assert sample(app, "acceltune_batch_size_bucket", {**CLASSIFY, "le": "32.0"}) == 2  # 1 and 1 (the 45-input batch is larger)
    assert sample(app, "acceltune_inputs_total", CLASSIFY) == sum(len(r) for r in requests) + 1
    assert sample(app, "acceltune_http_requests_total", {"path": "/v1/classify", "status": "200"}) == 25
    assert sample(app, "acceltune_tokens_total", CLASSIFY) > sample(app, "acceltune_inputs_total", CLASSIFY)


def test_two_batch_workers_give_each_request_its_own_results(tiny_model_dir, predictor):
    requests = [TEXTS[i % len(TEXTS):][:1 + i % 3] or TEXTS[:1] for i in range(24)]

    async def main():
        async with serving(settings(tiny_model_dir, max_wait_ms=0, max_batch_size=4, batch_workers=2), predictor) as c:
            responses = await asyncio.gather(*(c.post("/v1/classify", json={"inputs": r}) for r in requests))
            return responses, c.app

    responses, app = asyncio.run(main())
    assert app.state.serve.batchers["classify"].workers == 2
    for texts, r in zip(requests, responses):
        assert r.status_code == 200, r.text
        assert [g["label"] for g in r.json()["results"]] == [w["label"] for w in predictor.predict(texts)]
    assert sample(app, "acceltune_inputs_total", CLASSIFY) == sum(len(r) for r in requests)


def test_requests_with_different_top_k_in_one_batch_each_get_theirs(tiny_model_dir, predictor):
    p, backend = gated(predictor)
    backend.gate.set()

    async def main():
        async with serving(settings(tiny_model_dir, max_wait_ms=0), p) as c:
            backend.gate.clear()
            backend.entered.clear()
            held = asyncio.create_task(c.post("/v1/classify", json={"inputs": "held"}))
            await until(backend.entered.is_set, "first batch running")
            tasks = [asyncio.create_task(c.post("/v1/classify", json={"inputs": TEXTS[:2], "top_k": k})) for k in (1, 3, 2)]
            await until(lambda: queued(c.app) == 6, "three requests queued")
            backend.gate.set()
            await held
            return [await t for t in tasks], c.app

    responses, app = asyncio.run(main())
    assert sample(app, "acceltune_batch_requests_sum", CLASSIFY) == 4  # held, then the three together
    for k, r in zip((1, 3, 2), responses):
        want = predictor.predict(TEXTS[:2], top_k=k)
        assert [[t["label"] for t in g["top_k"]] for g in r.json()["results"]] == [[t["label"] for t in w["top_k"]] for w in want]


# ------------------------------------------------------------------------------- readiness, model, metrics

def test_once_ready_the_collector_runs_less_often(tiny_model_dir, predictor):
    """Full collections of the requests in flight held the event loop 100-150 ms every second under load."""
    import gc

    from acceltune.serve.lifespan import GC_THRESHOLDS

    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # Python's defaults, whatever an earlier test left
    try:
        async def main():
            async with serving(settings(tiny_model_dir), predictor):
                return gc.get_threshold()

        assert asyncio.run(main()) == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > 700 and GC_THRESHOLDS[2] > 10
    finally:
        gc.set_threshold(*before)


def test_readyz_is_503_until_the_model_is_loaded(tiny_model_dir, predictor):
    release = threading.Event()

    def slow_factory(s):
        assert release.wait(30)
        return predictor

    async def main():
        async with serving(settings(tiny_model_dir), None, wait_ready=False, predictor_factory=slow_factory) as c:
            assert (await c.get("/healthz")).status_code == 200
            before = await c.get("/readyz")
            assert before.status_code == 503 and before.json()["error"]["type"] == "not_ready"
            assert before.headers["retry-after"] == "1"
            assert (await c.post("/v1/classify", json={"inputs": "hi"})).status_code == 503
            assert (await c.get("/v1/model")).status_code == 503
            release.set()
            await until(lambda: c.app.state.serve.ready, "ready")
            assert (await c.get("/readyz")).json() == {"status": "ready"}
            model = (await c.get("/v1/model")).json()
            metrics = (await c.get("/metrics")).text
            docs = await c.get("/docs")
            js = await c.get("/docs/static/swagger-ui-bundle.js")
            schema = (await c.get("/openapi.json")).json()
            return model, metrics, docs, js, schema

    model, metrics, docs, js, schema = asyncio.run(main())
    assert model["labels"] == predictor.labels and model["max_length"] == 64
    assert model["backend"]["backend"] == "torch" and model["format"] == "transformers"
    for name in ("acceltune_http_requests_total", "acceltune_http_request_duration_seconds_bucket",
                 "acceltune_queue_wait_seconds_bucket", "acceltune_batch_size_bucket", "acceltune_queue_depth",
                 "acceltune_queue_limit",
                 "acceltune_inputs_total", "acceltune_tokens_total"):
        assert name in metrics
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    # Swagger UI comes from the installed swagger-ui-py, not a CDN: /docs renders offline. Version 5 or later:
    # 4.x cannot read the OpenAPI 3.1 document ("Unable to render this definition").
    assert "cdn" not in docs.text and "/docs/static/swagger-ui-bundle.js" in docs.text
    assert js.status_code == 200 and len(js.content) > 100_000
    version = re.search(rb'PACKAGE_VERSION:"(\d+)\.', js.content)
    assert version and int(version.group(1)) >= 5 and schema["openapi"].startswith("3.1")
    assert "ClassifyRequest" in schema["components"]["schemas"] and "/v1/classify" in schema["paths"]


def test_a_model_that_fails_to_load_reports_it(tiny_model_dir):
    errors = []

    def broken(s):
        raise UserError("boom")

    async def main():
        async with serving(settings(tiny_model_dir), None, wait_ready=False, predictor_factory=broken,
                           on_load_error=errors.append) as c:
            await until(lambda: errors, "load error reported")
            return await c.get("/readyz")

    r = asyncio.run(main())
    assert r.status_code == 503 and r.json()["error"]["type"] == "load_failed" and "boom" in r.json()["error"]["message"]
    assert len(errors) == 1


def test_not_a_model_directory_fails_before_serving(tmp_path):
    with pytest.raises(UserError):
        create_app(settings(tmp_path / "missing"))


# ------------------------------------------------------------------------------------- back-pressure

def test_full_queue_answers_429_with_retry_after_at_once(tiny_model_dir, predictor):
    p, backend = gated(predictor)
    backend.gate.set()  # open for the warm-up

    async def main():
        s = settings(tiny_model_dir, max_batch_size=1, max_queue=2, max_inputs=2, max_wait_ms=0)
        async with serving(s, p) as c:
            backend.gate.clear()
            backend.entered.clear()
            first = asyncio.create_task(c.post("/v1/classify", json={"inputs": "a"}))
            await until(backend.entered.is_set)  # the worker holds the first request
            second = asyncio.create_task(c.post("/v1/classify", json={"inputs": ["b", "c"]}))  # queued: 2 of 2
            await until(lambda: queued(c.app) >= 2)
            t0 = time.perf_counter()
            rejected = await c.post("/v1/classify", json={"inputs": "d"})
            elapsed = time.perf_counter() - t0
            # Refused before its body is even parsed: a full server spends nothing on it.
            unparsed = await c.post("/v1/classify", content=b"{not json")
            backend.gate.set()
            return rejected, elapsed, unparsed, await first, await second, c.app

    rejected, elapsed, unparsed, first, second, app = asyncio.run(main())
    assert rejected.status_code == 429 and rejected.headers["retry-after"] == "1"
    assert unparsed.status_code == 429
    err = rejected.json()["error"]
    assert err["type"] == "queue_full" and err["limit"] == "--max-queue" and err["max"] == 2
    assert elapsed < 1.0
    assert first.status_code == 200 and second.status_code == 200 and len(second.json()["results"]) == 2
    assert sample(app, "acceltune_rejected_requests_total", {"reason": "queue_full"}) == 2


def test_full_queue_still_asks_for_the_api_key_first(tiny_model_dir, predictor):
    p, backend = gated(predictor)
    backend.gate.set()
    key = {"Authorization": "Bearer k1"}

    async def main():
        s = settings(tiny_model_dir, max_batch_size=1, max_queue=1, max_inputs=1, max_wait_ms=0, api_keys=("k1",))
        async with serving(s, p) as c:
            backend.gate.clear()
            backend.entered.clear()
            first = asyncio.create_task(c.post("/v1/classify", json={"inputs": "a"}, headers=key))
            await until(backend.entered.is_set, "first batch running")
            second = asyncio.create_task(c.post("/v1/classify", json={"inputs": "b"}, headers=key))
            await until(lambda: queued(c.app) >= 1, "second request queued")
            anonymous = await c.post("/v1/classify", json={"inputs": "c"})
            refused = await c.post("/v1/classify", json={"inputs": "c"}, headers=key)
            backend.gate.set()
            return anonymous, refused, await first, await second, c.app

    anonymous, refused, first, second, app = asyncio.run(main())
    assert anonymous.status_code == 401 and refused.status_code == 429
    assert first.status_code == 200 and second.status_code == 200
    assert sample(app, "acceltune_http_requests_total", {"path": "/v1/classify", "status": "429"}) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are a Linux feature")
def test_inference_threads_run_at_lower_priority(tiny_model_dir, predictor):
    async def main():
        async with serving(settings(tiny_model_dir, inference_nice=5), predictor) as c:
            worker = c.app.state.serve.batchers["classify"].worker_native_id
            assert (await c.post("/v1/classify", json={"inputs": "a"})).status_code == 200
            return os.getpriority(os.PRIO_PROCESS, worker)

    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert asyncio.run(main()) == min(19, base + 5)


def test_a_request_not_answered_in_time_gets_504(tiny_model_dir, predictor):
    p, backend = gated(predictor)
    backend.gate.set()

    async def main():
        async with serving(settings(tiny_model_dir, request_timeout_s=0.2), p) as c:
            backend.gate.clear()
            r = await c.post("/v1/classify", json={"inputs": "slow"})
            backend.gate.set()
            return r

    r = asyncio.run(main())
    assert r.status_code == 504
    assert r.json()["error"]["type"] == "timeout" and r.json()["error"]["limit"] == "--request-timeout-s"


# ------------------------------------------------------------------------------------------- limits

LONG = "word " * 200


@pytest.mark.parametrize("body,status,kind,limit", [
    ({"inputs": ""}, 422, "invalid_request", None),
    ({"inputs": ["ok", ""]}, 422, "invalid_request", None),
    ({"inputs": []}, 422, "invalid_request", None),
    ({"inputs": 5}, 422, "invalid_request", None),
    ({"inputs": [1, 2]}, 422, "invalid_request", None),
    ({"inputs": [["a", "b"]]}, 422, "invalid_request", None),  # pairs sent to a single-text model
    ({"text": "typo in the field name"}, 422, "invalid_request", None),
    ({"inputs": "x", "top_k": 0}, 422, "invalid_request", None),
    ({"inputs": "x", "truncate": "maybe"}, 422, "invalid_request", None),
    # Strict types, as the OpenAPI schema states them (generated clients and gateways trust it).
    ({"inputs": "x", "truncate": 0}, 422, "invalid_request", None),
    ({"inputs": "x", "truncate": "true"}, 422, "invalid_request", None),
    ({"inputs": "x", "top_k": "2"}, 422, "invalid_request", None),
    ({"inputs": "x", "top_k": 1.5}, 422, "invalid_request", None),
    (b"{not json", 422, "invalid_request", None),
    (b"", 422, "invalid_request", None),
    ({"inputs": ["t"] * 5}, 413, "too_many_inputs", "--max-inputs"),
    ({"inputs": ["a long text " * 40]}, 413, "payload_too_large", "--max-payload-bytes"),
    ({"inputs": "x " * 100, "truncate": False}, 422, "input_too_long", "max_length"),
])
def test_bad_requests_get_their_documented_status(tiny_model_dir, predictor, body, status, kind, limit):
    async def main():
        async with serving(settings(tiny_model_dir, max_inputs=4, max_queue=16, max_payload_bytes=400), predictor) as c:
            if isinstance(body, bytes):
                return await c.post("/v1/classify", content=body, headers={"content-type": "application/json"})
            return await c.post("/v1/classify", json=body)

    r = asyncio.run(main())
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] == kind and err.get("limit") == limit and err["message"]


def test_the_openapi_schema_states_what_the_server_checks(tiny_model_dir, predictor):
    async def main():
        async with serving(settings(tiny_model_dir), predictor) as c:
            return (await c.get("/openapi.json")).json()

    schema = asyncio.run(main())
    body = schema["paths"]["/v1/classify"]["post"]["requestBody"]
    assert body["required"] and body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ClassifyRequest"}
    request = schema["components"]["schemas"]["ClassifyRequest"]
    props = request["properties"]
    assert request["additionalProperties"] is False and request["required"] == ["inputs"]
    one, many = props["inputs"]["anyOf"]
    assert one == {"type": "string", "minLength": 1}
    assert many == {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}
    assert props["top_k"]["type"] == "integer" and props["top_k"]["minimum"] == 1
    assert props["truncate"]["type"] == "boolean"
    responses = schema["paths"]["/v1/classify"]["post"]["responses"]
    assert {"200", "401", "413", "422", "429", "503", "504"} <= set(responses)


def test_long_inputs_are_truncated_and_say_so(tiny_model_dir, predictor):
    async def main():
        async with serving(settings(tiny_model_dir), predictor) as c:
            return await c.post("/v1/classify", json={"inputs": [LONG, "short"], "top_k": 99})

    r = asyncio.run(main())
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["truncated"] for x in results] == [True, False]
    assert len(results[0]["top_k"]) == len(predictor.labels)  # top_k is capped at the number of labels
    assert results[0]["label"] == predictor.predict([LONG])[0]["label"]


def test_settings_refuse_impossible_limits(tiny_model_dir):
    with pytest.raises(UserError, match="--max-inputs"):
        settings(tiny_model_dir, max_inputs=100, max_queue=10)
    with pytest.raises(UserError, match="--max-batch-size"):
        settings(tiny_model_dir, max_batch_size=0)


def test_batch_workers_share_out_the_inference_threads(tiny_model_dir, monkeypatch):
    import dataclasses

    import acceltune.cpu

    for cores, workers in ((1, 1), (2, 2), (16, 2)):  # the default: 2 workers wherever there are 2 cores
        monkeypatch.setattr(acceltune.cpu, "usable_cpu_count", lambda: cores)
        auto = ServeSettings(model_dir=tiny_model_dir)
        assert (auto.workers, auto.inference_threads) == (workers, None if workers == 1 else cores // 2)
    one = settings(tiny_model_dir, batch_workers=1)
    assert (one.workers, one.inference_threads) == (1, None)  # one worker: the backend takes every usable core
    two = settings(tiny_model_dir, batch_workers=2)
    assert dataclasses.replace(two, batch_workers=1).inference_threads is None  # derived, never stored
    assert settings(tiny_model_dir, batch_workers=64).inference_threads == 1
    assert settings(tiny_model_dir, batch_workers=2, threads=3).inference_threads == 3  # given: per worker
    with pytest.raises(UserError, match="--batch-workers"):
        settings(tiny_model_dir, batch_workers=0)


def test_apps_that_keep_order_take_one_batch_at_a_time(tiny_model_dir):
    ordered = ServeSettings(model_dir=tiny_model_dir).in_order("keeps turns in order")
    assert (ordered.workers, ordered.processes) == (1, 1)
    with pytest.raises(UserError, match=r"^--batch-workers 2: keeps turns in order; serve it with --batch-workers 1$"):
        settings(tiny_model_dir, batch_workers=2).in_order("keeps turns in order")
    with pytest.raises(UserError, match=r"^--processes 2: keeps turns in order; serve it with --processes 1$"):
        settings(tiny_model_dir, processes=2).in_order("keeps turns in order")


def test_batch_workers_run_that_many_batches_at_once():
    from acceltune.serve.batcher import Batcher

    # Each call waits for a second call to be in flight: with one worker the barrier breaks (timeout).
    both_running = threading.Barrier(2, timeout=30)
    threads_seen = set()

    def fn(inputs):
        both_running.wait()
        threads_seen.add(threading.get_ident())
        return [x * 10 for x in inputs]

    async def main():
        batcher = Batcher(fn, name="two", max_batch_size=1, max_wait_s=0, workers=2)
        batcher.start()
        try:
            return await asyncio.gather(batcher.submit([1]), batcher.submit([2]))
        finally:
            await batcher.close()

    assert asyncio.run(main()) == [[10], [20]]
    assert len(threads_seen) == 2 and not both_running.broken


@pytest.mark.parametrize("workers, sizes", [(1, [8]), (2, [4, 4])])
def test_a_burst_is_shared_between_the_idle_workers(workers, sizes):
    from acceltune.serve.batcher import Batcher

    seen = []
    together = threading.Barrier(workers, timeout=30)  # each batch runs until the other is formed, as a model would

    def fn(inputs):
        seen.append(len(inputs))
        together.wait()
        return inputs

    async def main():
        batcher = Batcher(fn, name="burst", max_batch_size=8, max_wait_s=60, workers=workers)
        batcher.start()
        try:
            await until(lambda: batcher._idle == workers, "every worker waiting")
            return await asyncio.gather(*(batcher.submit([i]) for i in range(8)))  # one tick: queued together
        finally:
            await batcher.close()

    assert asyncio.run(main()) == [[i] for i in range(8)]
    assert sorted(seen) == sizes


def test_staged_batches_prepare_at_once_and_finish_in_the_order_they_were_formed():
    from acceltune.serve.batcher import Batcher, InferenceFailed, Staged

    # Batch [1] is formed first; its prepare waits until batch [2] has prepared (both at once, on two workers),
    # and batch [2]'s finish must still wait for batch [1]'s. Batch [3]'s prepare fails: [4] still finishes.
    second_prepared = threading.Event()
    finished = []

    class Ordered(Staged):
        def prepare(self, inputs):
            if inputs == [1]:
                assert second_prepared.wait(30)
            if inputs == [2]:
                second_prepared.set()
            if inputs == [3]:
                raise ValueError("broken")
            return inputs

        def finish(self, state):
            finished.append(state[0])
            return [x * 10 for x in state]

    async def main():
        batcher = Batcher(Ordered(), name="ordered", max_batch_size=1, max_wait_s=0, workers=2)
        batcher.start()
        try:
            first = batcher.submit([1])
            second = batcher.submit([2])
            answers = await asyncio.gather(first, second)
            third, fourth = batcher.submit([3]), batcher.submit([4])
            with pytest.raises(InferenceFailed, match="broken"):
                await third
            return answers, await fourth
        finally:
            await batcher.close()

    assert asyncio.run(main()) == ([[10], [20]], [40])
    assert finished == [1, 2, 4] and second_prepared.is_set()


def test_a_batch_function_may_return_a_future_and_the_next_batch_runs_before_it_resolves():
    from concurrent.futures import Future

    from acceltune.serve.batcher import Batcher, InferenceFailed

    held: list[Future] = []
    second_called = threading.Event()

    def fn(inputs):
        if inputs == [2]:
            second_called.set()
        future = Future()
        held.append(future)
        return future

    async def main():
        batcher = Batcher(fn, name="deferred", max_batch_size=1, max_wait_s=0)
        batcher.start()
        try:
            first, second = batcher.submit([1]), batcher.submit([2])
            assert await asyncio.to_thread(second_called.wait, 30)  # the first batch's future is still pending
            assert not first.done()
            held[1].set_result(["b"])
            assert await second == ["b"]
            held[0].set_exception(OSError("disk full"))
            with pytest.raises(InferenceFailed, match="disk full"):
                await first
        finally:
            await batcher.close()

    asyncio.run(main())


def test_the_queue_holds_what_drains_in_the_wait_bound_at_the_measured_capacity():
    from acceltune.serve.batcher import WARMUP_BATCHES, Batcher, QueueFull

    fast = threading.Event()

    def fn(inputs):  # a model call of at least 20 ms until `fast` is set: at most 50 inputs/s
        fast.wait(0.02)
        return inputs

    async def main():
        batcher = Batcher(fn, name="timed", max_batch_size=1, max_wait_s=0, max_queue=100, max_queue_wait_s=0.1)
        batcher.start()
        try:
            for i in range(WARMUP_BATCHES):
                await batcher.submit([i])
            unmeasured = batcher.queue_limit
            for i in range(3):
                await batcher.submit([i])  # measured: the capacity is known
            accepted = []
            with pytest.raises(QueueFull):
                for i in range(100):
                    accepted.append(batcher.submit([i]))
            limit = batcher.queue_limit
            fast.set()
            return unmeasured, limit, len(accepted), await asyncio.gather(*accepted)
        finally:
            fast.set()
            await batcher.close()

    unmeasured, limit, n, results = asyncio.run(main())
    assert unmeasured == 100  # warm-up batches are not measured: only the count bound
    assert 1 <= limit <= 5  # 0.1 s of work at <= 50 inputs/s
    assert n <= limit + 1 and results == [[i] for i in range(n)]  # +1: the one the worker took off the queue


def test_serve_flags_are_generated_from_the_settings_with_the_same_names_and_defaults(tiny_model_dir):
    import argparse
    import dataclasses

    from acceltune.commands.serve import add_arguments
    from acceltune.config import dataclass_values
    from acceltune.serve.settings import NOT_FLAGS

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = {o for a in parser._actions for o in a.option_strings} - {"-h", "--help"}
    assert flags == {"--backend", "--device", "--host", "--port", "--max-batch-size", "--max-batch-tokens", "--max-wait-ms",
                     "--max-queue", "--max-queue-wait-ms", "--api-key-file", "--request-timeout-s", "--max-inputs", "--max-payload-bytes",
                     "--inference-nice", "--access-log", "--batch-workers", "--processes"}
    args = parser.parse_args([str(tiny_model_dir)])
    values = dataclass_values(args, ServeSettings, exclude=NOT_FLAGS)
    defaults = {f.name: f.default for f in dataclasses.fields(ServeSettings) if f.name not in NOT_FLAGS}
    assert values == defaults and defaults["max_queue_wait_ms"] == 1000.0 and defaults["max_wait_ms"] == 2.0
    args = parser.parse_args([str(tiny_model_dir), "--max-batch-tokens", "64", "--port", "9000", "--backend", "onnx"])
    assert (args.max_batch_tokens, args.port, args.backend) == (64, 9000, "onnx")
    with pytest.raises(SystemExit):
        parser.parse_args([str(tiny_model_dir), "--backend", "jax"])


def test_serve_without_fastapi_is_one_line_naming_the_extra(capsys, monkeypatch, tmp_path):
    from acceltune.cli import main

    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if the serve extra were not installed
    assert main(["serve", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "acceltune: error: fastapi is not installed: pip install 'acceltune[serve]'"


# --------------------------------------------------------------------------------------------- auth

def test_api_key_is_required_except_on_probes(tiny_model_dir, predictor):
    async def main():
        async with serving(settings(tiny_model_dir, api_keys=("s3cret", "next-key")), predictor) as c:
            ok = {"Authorization": "Bearer s3cret"}
            out = {
                "none": await c.post("/v1/classify", json={"inputs": "hi"}),
                "wrong": await c.post("/v1/classify", json={"inputs": "hi"}, headers={"Authorization": "Bearer nope"}),
                "basic": await c.post("/v1/classify", json={"inputs": "hi"}, headers={"Authorization": "Basic s3cret"}),
                "right": await c.post("/v1/classify", json={"inputs": "hi"}, headers=ok),
                "second": await c.post("/v1/classify", json={"inputs": "hi"}, headers={"Authorization": "Bearer next-key"}),
                "model": await c.get("/v1/model"),
                "model_ok": await c.get("/v1/model", headers=ok),
                "openapi": await c.get("/openapi.json"),
                "docs": await c.get("/docs"),
                "healthz": await c.get("/healthz"),
                "readyz": await c.get("/readyz"),
                "metrics": await c.get("/metrics"),
            }
            return out

    r = asyncio.run(main())
    for name in ("none", "wrong", "basic", "model", "openapi", "docs"):
        assert r[name].status_code == 401, name
        assert r[name].json()["error"]["type"] == "unauthorized"
        assert r[name].headers["www-authenticate"] == "Bearer"
    for name in ("right", "second", "model_ok", "healthz", "readyz", "metrics"):
        assert r[name].status_code == 200, name


def test_api_key_file(tmp_path):
    from acceltune.serve import read_api_keys

    f = tmp_path / "keys"
    f.write_text("# rotate monthly\nfirst\n\n  second  \n")
    assert read_api_keys(f) == ("first", "second")
    f.write_text("\n# nothing\n")
    with pytest.raises(UserError):
        read_api_keys(f)
    with pytest.raises(UserError):
        read_api_keys(tmp_path / "absent")


# ------------------------------------------------------------------------------- SIGTERM, real server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def queue_depth(base: str) -> float:
    return metric(base, "acceltune_queue_depth", {"batcher": "classify"})


def test_sigterm_finishes_every_accepted_request(tiny_model_dir, tmp_path):
    port = _free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    log = open(tmp_path / "server.log", "w")
    # A batching window far longer than the test keeps every request queued until SIGTERM: only the drain
    # can answer them.
    proc = subprocess.Popen([sys.executable, "-m", "acceltune", "serve", str(tiny_model_dir), "--port", str(port),
                             "--backend", "torch", "--max-wait-ms", "120000", "--max-batch-size", "256",
                             "--request-timeout-s", "300"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("server not ready: " + (tmp_path / "server.log").read_text())

        def call(i):
            return httpx.post(f"{base}/v1/classify", json={"inputs": [TEXTS[i % len(TEXTS)]] * (1 + i % 3)}, timeout=30)

        with ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(call, i) for i in range(12)]
            want = sum(1 + i % 3 for i in range(12))
            deadline = time.time() + 60
            while queue_depth(base) < want:  # every request accepted and queued
                assert time.time() < deadline and not any(f.done() for f in futures), "requests not queued"
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            responses = [f.result() for f in futures]
        rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert [r.status_code for r in responses] == [200] * 12, (tmp_path / "server.log").read_text()
    assert [len(r.json()["results"]) for r in responses] == [1 + i % 3 for i in range(12)]
    assert rc == 0, (tmp_path / "server.log").read_text()
    # The server's own count (benchmarks/serve_load.py's sigterm scenario reads it): every request that entered
    # the app (the 12 classify calls and the readiness and queue-depth polls) was answered.
    stopped = re.search(r"stopped: (\d+) requests received, (\d+) answered", (tmp_path / "server.log").read_text())
    assert stopped is not None and int(stopped.group(1)) == int(stopped.group(2)) >= 13, (tmp_path / "server.log").read_text()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz", timeout=2)
