"""/openapi.json and /docs (Swagger UI, served from the swagger-ui-bundle package so it renders offline).

Authenticated like the application routes when the server has API keys."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse, JSONResponse, Response

from acceltune.serve.openapi import openapi_schema

#: Where /docs loads Swagger UI from: the swagger-ui-bundle package, mounted by mount_swagger_ui.
DOCS_STATIC = "/docs/static"

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_schema(request.app))


@router.get("/docs")
async def docs(request: Request) -> HTMLResponse:
    title = request.app.title
    if not getattr(request.app.state, "docs_static", False):  # package missing: Swagger UI from its CDN
        return get_swagger_ui_html(openapi_url="/openapi.json", title=title)
    return get_swagger_ui_html(openapi_url="/openapi.json", title=title,
                               swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
                               swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
                               swagger_favicon_url=f"{DOCS_STATIC}/favicon-32x32.png")


def mount_swagger_ui(app: FastAPI) -> None:
    """Serve Swagger UI's files from the swagger-ui-bundle package (if installed) at DOCS_STATIC."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        app.state.docs_static = False
        return
    from starlette.staticfiles import StaticFiles

    app.mount(DOCS_STATIC, StaticFiles(directory=str(swagger_ui_path)), name="docs-static")
    app.state.docs_static = True
