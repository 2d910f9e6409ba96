"""`acceltune serve MODEL_DIR`: the HTTP model server (FastAPI + uvicorn) with dynamic batching.

One process, one model, one batching worker thread; see docs/serving.md for the API. SIGTERM (or
Ctrl-C) stops accepting connections, finishes every accepted request, drains the batch queue and
exits 0. The flags are generated from acceltune.serve.settings.ServeSettings.
"""

from __future__ import annotations

import argparse
import logging
import signal

from acceltune.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from acceltune.config import add_dataclass_arguments
    from acceltune.extras import require

    # The flags come from ServeSettings, inside acceltune.serve, which needs the serve extra to import.
    require("fastapi", "serve")
    from acceltune.serve.settings import NOT_FLAGS, ServeSettings

    p.add_argument("model_dir", metavar="MODEL_DIR", help="a model directory from 'acceltune train' or 'acceltune export'")
    add_dataclass_arguments(p, ServeSettings, exclude=NOT_FLAGS)
    p.add_argument("--api-key-file", metavar="FILE",
                   help="require 'Authorization: Bearer KEY' with a key from FILE (one per line) on all but "
                        "/healthz, /readyz and /metrics")
    p.add_argument("--access-log", action="store_true", help="log every request (costs throughput)")


def run(args: argparse.Namespace) -> int:
    from acceltune.extras import require

    uvicorn = require("uvicorn", "serve")

    from acceltune.commands.common import inference_threads
    from acceltune.config import dataclass_values
    from acceltune.serve import ServeSettings, create_app, read_api_keys
    from acceltune.serve.settings import NOT_FLAGS

    # ONNX Runtime threads: every usable core unless ACCELTUNE_THREADS says otherwise. Measured on 2 cores
    # with an idle machine: 2 threads gave 861 req/s (1 message) and 1,054 msg/s (32 per request) against 609
    # and 562 with 1 thread left to the event loop: the batcher keeps inference in bursts, so the cores are shared.
    settings = ServeSettings(model_dir=args.model_dir, **dataclass_values(args, ServeSettings, exclude=NOT_FLAGS),
                             api_keys=read_api_keys(args.api_key_file) if args.api_key_file else (),
                             threads=inference_threads())
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    load_error: list[BaseException] = []
    server = None

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
        """Starts the drain the moment a shutdown signal arrives: /readyz turns 503 at once, and queued requests
        run without waiting out the batching window (uvicorn waits for them before the app's shutdown)."""

        def __init__(self, config, app):
            super().__init__(config)
            self._app = app

        def handle_exit(self, sig, frame) -> None:
            self._app.state.serve.begin_drain()
            super().handle_exit(sig, frame)

    return Server


def _Server(config, app):  # noqa: N802 - a factory so that importing this module does not import uvicorn
    return _server_class()(config, app)
