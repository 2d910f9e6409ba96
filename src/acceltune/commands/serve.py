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
    from acceltune.serve import create_app
    from acceltune.serve.runner import run_server, settings_from_args

    # ONNX Runtime threads: every usable core unless ACCELTUNE_THREADS says otherwise (settings_from_args). Every
    # core beat one left to the event loop (docs/lab-notes.md, Serving): the batcher keeps inference in bursts.
    settings = settings_from_args(args, model_dir=args.model_dir)
    return run_server(lambda on_load_error: create_app(settings, on_load_error=on_load_error), settings,
                      access_log=args.access_log)
