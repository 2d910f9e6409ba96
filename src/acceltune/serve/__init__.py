"""The model server behind `acceltune serve`: see docs/serving.md.

``create_app(ServeSettings(model_dir=...))`` gives the FastAPI app serving /v1/classify; an application
passes its own routers: ``create_app(settings, routers=[ClassifyRoutes(model_dir).router, my_router])``.
acceltune.commands.serve runs it with uvicorn.
"""

from acceltune.serve.app import create_app
from acceltune.serve.batcher import Batcher, BatchFunction
from acceltune.serve.errors import APIError
from acceltune.serve.lifespan import start_batcher
from acceltune.serve.routes.classify import ClassifyRoutes
from acceltune.serve.settings import ServeSettings, read_api_keys

__all__ = ["create_app", "ServeSettings", "read_api_keys", "ClassifyRoutes", "start_batcher", "Batcher",
           "BatchFunction", "APIError"]
