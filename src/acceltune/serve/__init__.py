"""The model server behind `acceltune serve`: see docs/serving.md.

``create_app(ServeSettings(model_dir=...))`` gives the FastAPI app; acceltune.commands.serve runs it with uvicorn.
"""

from acceltune.serve.app import create_app
from acceltune.serve.settings import ServeSettings, read_api_keys

__all__ = ["create_app", "ServeSettings", "read_api_keys"]
