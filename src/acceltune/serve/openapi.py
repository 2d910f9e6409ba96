"""The OpenAPI document: FastAPI's, plus the request bodies of routes that validate their body themselves.

Such a route declares its body with ``openapi_extra=json_body(Model)``; ``openapi_schema`` moves each
body schema (and the models it refers to) into ``components/schemas``, as FastAPI does for its own bodies.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

REF = "#/components/schemas/{model}"


def json_body(model: type[BaseModel]) -> dict:
    """``openapi_extra`` for a route whose JSON body ``model`` validates."""
    schema = model.model_json_schema(ref_template=REF)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def openapi_schema(app: FastAPI) -> dict:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
                body = content.get("schema")
                if not body or "title" not in body or "$ref" in body:
                    continue
                body = dict(body)
                components.update(body.pop("$defs", {}))
                components[body["title"]] = body
                content["schema"] = {"$ref": REF.format(model=body["title"])}
        app.openapi_schema = schema
    return app.openapi_schema
