"""`acceltune serve MODEL_DIR`: the HTTP model server (FastAPI + uvicorn) with dynamic batching.

One process, one model, one batching worker thread (or --batch-workers N); see docs/serving.md for the API. SIGTERM (or
Ctrl-C) stops accepting connections, finishes every accepted request, drains the batch queue and
exits 0. The flags are generated from acceltune.serve.settings.ServeSettings (acceltune.serve.runner,
which the applications' servers share).
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from acceltune.extras import require

    # The flags come from ServeSettings, inside acceltune.serve, which needs the serve extra to import.
    require("fastapi", "serve")
    from acceltune.serve.runner import add_server_arguments

    p.add_argument("model_dir", metavar="MODEL_DIR", help="a model directory from 'acceltune train' or 'acceltune export'")
    add_server_arguments(p)


def run(args: argparse.Namespace) -> int:
    from acceltune.commands.common import inference_threads
    from acceltune.serve import create_app
    from acceltune.serve.runner import run_server, settings_from_args

    # ONNX Runtime threads: every usable core unless ACCELTUNE_THREADS says otherwise. Measured on 2 cores
    # with an idle machine: 2 threads gave 861 req/s (1 message) and 1,054 msg/s (32 per request) against 609
    # and 562 with 1 thread left to the event loop: the batcher keeps inference in bursts, so the cores are shared.
    settings = settings_from_args(args, model_dir=args.model_dir, threads=inference_threads())
    return run_server(lambda on_load_error: create_app(settings, on_load_error=on_load_error), settings,
                      access_log=args.access_log)
