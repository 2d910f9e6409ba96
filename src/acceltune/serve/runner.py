"""Running an app from the command line: the server flags (generated from ServeSettings) and uvicorn with
the drain on SIGTERM. `acceltune serve` and every application's server command use these, so all of them
take the same flags and shut down the same way.

    add_server_arguments(parser)                      # --host, --port, limits, --api-key-file, --access-log
    settings = settings_from_args(args, model_dir=args.model_dir)
    run_server(lambda on_load_error: create_app(settings, routers=[...], on_load_error=on_load_error),
               settings, access_log=args.access_log)
"""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Callable

from acceltune.errors import UserError


def add_server_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ServeSettings (all but NOT_FLAGS), --api-key-file and --access-log."""
    from acceltune.config import add_dataclass_arguments
    from acceltune.serve.settings import NOT_FLAGS, ServeSettings

    add_dataclass_arguments(p, ServeSettings, exclude=NOT_FLAGS)
    p.add_argument("--api-key-file", metavar="FILE",
                   help="require 'Authorization: Bearer KEY' with a key from FILE (one per line) on all but "
                        "/healthz, /readyz and /metrics")
    p.add_argument("--access-log", action="store_true", help="log every request (costs throughput)")


def settings_from_args(args: argparse.Namespace, *, model_dir, threads: int | None = None):
    """ServeSettings from the flags add_server_arguments made (keys read from --api-key-file); ``threads``
    (ONNX Runtime's) default to the user's ACCELTUNE_THREADS, else every usable core."""
    from acceltune.commands.common import inference_threads
    from acceltune.config import dataclass_values
    from acceltune.serve.settings import NOT_FLAGS, ServeSettings, read_api_keys

    threads = threads if threads is not None else inference_threads()

    return ServeSettings(model_dir=model_dir, **dataclass_values(args, ServeSettings, exclude=NOT_FLAGS),
                         api_keys=read_api_keys(args.api_key_file) if args.api_key_file else (), threads=threads)


def run_server(make_app: Callable[[Callable[[BaseException], None]], object], settings, *, access_log: bool = False) -> int:
    """Serve ``make_app(on_load_error)`` with uvicorn until SIGTERM or Ctrl-C (drained: every accepted request
    answered), 0 then; a model that fails to load stops the server and is raised as a UserError."""
    from acceltune.extras import require

    uvicorn = require("uvicorn", "serve")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    load_error: list[BaseException] = []
    server = None

    def on_load_error(e: BaseException) -> None:
        load_error.append(e)
        if server is not None:
            server.should_exit = True

    app = make_app(on_load_error)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, lifespan="on", access_log=access_log,
                            log_level="info", timeout_graceful_shutdown=settings.shutdown_timeout_s, backlog=2048)
    server = _server_class()(config, app)
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
