"""The baseline for benchmarks/serve_load.py: the FastAPI + transformers ``pipeline`` server one writes by hand.

A pydantic body, a plain ``def`` endpoint (FastAPI runs it in its thread pool) calling the pipeline
per request, default JSON responses, no batching across requests. Same API shape as acceltune's
/v1/classify for the fields the benchmark uses.

    python benchmarks/baseline_pipeline_server.py MODEL_DIR --port 8090
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline


class ClassifyRequest(BaseModel):
    inputs: str | list[str]


def build_app(model_dir: str) -> FastAPI:
    app = FastAPI()
    pipe = pipeline("text-classification", model=model_dir, tokenizer=model_dir, device=-1)

    @app.post("/v1/classify")
    def classify(req: ClassifyRequest):
        texts = [req.inputs] if isinstance(req.inputs, str) else req.inputs
        out = pipe(texts, truncation=True, max_length=64)
        return {"results": [{"label": o["label"], "score": o["score"]} for o in out]}

    @app.get("/readyz")
    def readyz():
        return {"status": "ready"}

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir", help="a transformers model directory (config, weights, tokenizer)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    args = p.parse_args()
    uvicorn.run(build_app(args.model_dir), host=args.host, port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
