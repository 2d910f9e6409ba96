"""/openapi.json and /docs: Swagger UI 5 (the first to read the OpenAPI 3.1 that FastAPI writes; the
swagger-ui-bundle package carried 4.15, which shows "Unable to render this definition"), served from the
swagger-ui-py package (Apache-2.0; its static files only, nothing of it is imported) so /docs renders offline.

Authenticated like the application routes when the server has API keys."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse, JSONResponse, Response

#: Where /docs loads Swagger UI from: swagger-ui-py's static files, mounted by mount_swagger_ui.
DOCS_STATIC = "/docs/static"

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def docs(request: Request) -> HTMLResponse:
    title = request.app.title
    if not getattr(request.app.state, "docs_static", False):  # package missing: Swagger UI from its CDN
        return get_swagger_ui_html(openapi_url="/openapi.json", title=title)
    return get_swagger_ui_html(openapi_url="/openapi.json", title=title,
                               swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
                               swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
                               swagger_favicon_url=f"{DOCS_STATIC}/favicon-32x32.png")


def swagger_ui_files() -> Path | None:
    """swagger-ui-py's directory of Swagger UI files, found without importing the package (it imports jinja2)."""
    spec = importlib.util.find_spec("swagger_ui")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        static = Path(location) / "static"
        if (static / "swagger-ui-bundle.js").is_file():
            return static
    return None


def mount_swagger_ui(app: FastAPI) -> None:
    """Serve Swagger UI's files (if the package is installed) at DOCS_STATIC; /docs falls back to the CDN."""
    files = swagger_ui_files()
    app.state.docs_static = files is not None
    if files is not None:
        from starlette.staticfiles import StaticFiles

        app.mount(DOCS_STATIC, StaticFiles(directory=str(files)), name="docs-static")
