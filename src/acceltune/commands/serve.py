"""`acceltune serve MODEL_DIR`: the HTTP model server (FastAPI + uvicorn) with dynamic batching.

One process, one model, one batching worker thread; see docs/serving.md for the API. SIGTERM (or
Ctrl-C) stops accepting connections, finishes every accepted request, drains the batch queue and
exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal

from acceltune.cpu import usable_cpu_count
from acceltune.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a model directory from 'acceltune train' or 'acceltune export'")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx", "tensorrt"),
                   help="inference backend; auto follows the directory's format")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for all interfaces)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--max-batch-size", type=int, default=64, help="inputs per model batch (requests are never split)")
    p.add_argument("--max-batch-tokens", type=int, default=None,
                   help="padded tokens per backend call (a batch is cut into calls, longest inputs first); "
                        "default 128 on CPU, 8192 on GPU")
    p.add_argument("--max-wait-ms", type=float, default=2.0,
                   help="how long the oldest queued input waits for more before its batch runs")
    p.add_argument("--max-queue", type=int, default=256,
                   help="inputs waiting for a batch, all requests together; more gets 429 + Retry-After at once")
    p.add_argument("--api-key-file", metavar="FILE",
                   help="require 'Authorization: Bearer KEY' with a key from FILE (one per line) on all but "
                        "/healthz, /readyz and /metrics")
    p.add_argument("--request-timeout-s", type=float, default=10.0, help="answer 504 if a request waits longer")
    p.add_argument("--max-inputs", type=int, default=256, help="inputs per request (413 beyond)")
    p.add_argument("--max-payload-bytes", type=int, default=1_000_000, help="request body size (413 beyond)")
    p.add_argument("--inference-nice", type=int, default=10,
                   help="lower the inference threads' priority by N (Linux, 0-19; 0 keeps it) so the event loop "
                        "answers and refuses requests promptly under load")
    p.add_argument("--access-log", action="store_true", help="log every request (costs throughput)")


def run(args: argparse.Namespace) -> int:
    # ONNX Runtime threads: every usable core (ACCELTUNE_THREADS overrides). Measured on 2 cores with an
    # idle machine: 2 threads gave 861 req/s (1 message) and 1,054 msg/s (32 per request) against 609 and
    # 562 with 1 thread left to the event loop: the batcher keeps inference in bursts, so the cores are shared.
    os.environ.setdefault("ACCELTUNE_THREADS", str(usable_cpu_count()))
    from acceltune.extras import require

    require("fastapi", "serve")
    uvicorn = require("uvicorn", "serve")

    from acceltune.serve import ServeSettings, create_app, read_api_keys

    settings = ServeSettings(
        model_dir=args.model_dir, backend=args.backend, device=args.device, host=args.host, port=args.port,
        max_batch_size=args.max_batch_size, max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
        request_timeout_s=args.request_timeout_s, max_inputs=args.max_inputs,
        max_payload_bytes=args.max_payload_bytes, inference_nice=args.inference_nice,
        api_keys=read_api_keys(args.api_key_file) if args.api_key_file else (),
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    load_error: list[BaseException] = []
    server: _Server | None = None

    def on_load_error(e: BaseException) -> None:
        load_error.append(e)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_load_error=on_load_error)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, lifespan="on", access_log=args.access_log,
                            log_level="info", timeout_graceful_shutdown=settings.shutdown_timeout_s, backlog=2048)
    server = _Server(config, app)
    # uvicorn re-raises the signal it caught once it has shut down gracefully; with SIGTERM ignored by
    # then, a drained server exits 0 instead of dying by the signal.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if load_error:
        e = load_error[0]
        if isinstance(e, UserError):
            raise e
        raise UserError(f"cannot load the model from {settings.model_dir}: {e.__class__.__name__}: {e}")
    if not server.started:
        raise UserError(f"the server did not start on {settings.host}:{settings.port} (see the log above; is the port in use?)")
    return 0


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """Marks the app as draining the moment a shutdown signal arrives, so /readyz turns 503 at once."""

        def __init__(self, config, app):
            super().__init__(config)
            self._app = app

        def handle_exit(self, sig, frame) -> None:
            self._app.state.serve.draining = True
            super().handle_exit(sig, frame)

    return Server


def _Server(config, app):  # noqa: N802 - a factory so that importing this module does not import uvicorn
    return _server_class()(config, app)
