"""The chat page at GET / (static HTML and JavaScript in this package, nothing from a CDN).

The page holds no data, so it is served without an API key, like the probes; the API calls it makes
send the key the user types when the server asks for one (401). ``?say=TEXT`` (repeatable) sends
messages as soon as the page opens, so a link can open a conversation; ``?conversation=ID`` continues one;
``?slot.NAME=VALUE`` fills a reply slot.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import Response

STATIC = Path(__file__).parent / "static"
FILES = {"/": ("chat.html", "text/html; charset=utf-8"), "/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
         "/chat.css": ("chat.css", "text/css; charset=utf-8")}


def page_router() -> APIRouter:
    """GET /, /chat.js and /chat.css, read once."""
    router = APIRouter(include_in_schema=False)
    for path, (name, media_type) in FILES.items():
        router.add_api_route(path, _file_route((STATIC / name).read_bytes(), media_type), methods=["GET"])
    return router


def _file_route(body: bytes, media_type: str):
    async def serve_file() -> Response:
        return Response(body, media_type=media_type, headers={"Cache-Control": "no-cache"})

    return serve_file
