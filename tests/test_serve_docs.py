"""/docs renders in a real browser, offline: headless Chromium loads the page from a running server and
Swagger UI lists every route of /openapi.json, not "Unable to render this definition" (what Swagger UI 4.x
shows for the OpenAPI 3.1 that FastAPI writes)."""

from __future__ import annotations

import re

import httpx

from browser import rendered_dom
from servers import running_server


def test_docs_page_lists_every_route_in_headless_chromium(tiny_model_dir, tmp_path):
    with running_server(["serve", tiny_model_dir, "--backend", "torch"], tmp_path / "server.log") as base:
        paths = set(httpx.get(f"{base}/openapi.json", timeout=10).json()["paths"])
        dom = rendered_dom(f"{base}/docs", tmp_path / "profile")
    assert "Unable to render" not in dom, dom[-3000:]
    listed = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert paths == {"/healthz", "/readyz", "/metrics", "/v1/classify", "/v1/model"}
    assert listed == paths, dom[-3000:]
    assert "OAS 3.1" in dom
