"""The model server behind `acceltune serve`: see docs/serving.md.

``create_app(ServeSettings(model_dir=...))`` gives the FastAPI app serving /v1/classify; an application
passes its own routers: ``create_app(settings, routers=[ClassifyRoutes(model_dir).router, my_router])``.
acceltune.commands.serve runs it with uvicorn (acceltune.serve.runner: the flags and the drain, shared with the
applications' servers).
"""

from acceltune.serve.app import create_app
from acceltune.serve.batcher import Batcher, BatchFunction, Staged
from acceltune.serve.errors import APIError
from acceltune.serve.handlers import batcher_or_503, read_json, run_batch, serve_state
from acceltune.serve.lifespan import start_batcher
from acceltune.serve.routes.classify import ClassifyRoutes, load_predictor
from acceltune.serve.runner import add_server_arguments, run_server, settings_from_args
from acceltune.serve.openapi import json_body
from acceltune.serve.schemas import ErrorResponse
from acceltune.serve.settings import NOT_FLAGS, ServeSettings, read_api_keys

__all__ = ["create_app", "ServeSettings", "read_api_keys", "ClassifyRoutes", "start_batcher", "Batcher",
           "BatchFunction", "Staged", "APIError", "batcher_or_503", "read_json", "run_batch", "serve_state", "NOT_FLAGS",
           "load_predictor", "add_server_arguments", "settings_from_args", "run_server",
           "json_body", "ErrorResponse"]
