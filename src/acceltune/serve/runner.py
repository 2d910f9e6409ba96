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
    answered), 0 then; a model that fails to load stops the server and is raised as a UserError. With
    ``settings.processes`` N > 1, N processes share the port (acceltune.serve.workers); an app whose state lives
    in its process is given ``settings.in_order(reason)``, which refuses that."""
    from acceltune.extras import require

    require("uvicorn", "serve")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    if settings.processes > 1:
        from acceltune.serve.workers import serve_processes

        return serve_processes(make_app, settings, access_log=access_log)
    # uvicorn re-raises the signal it caught once it has shut down gracefully; with SIGTERM ignored by
    # then, a drained server exits 0 instead of dying by the signal.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        from acceltune.serve.server import serve_app

        return serve_app(make_app, settings, access_log=access_log)
    finally:
        signal.signal(signal.SIGTERM, previous)
