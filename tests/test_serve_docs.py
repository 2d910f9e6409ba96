"""/docs renders in a real browser, offline: headless Chromium (Debian's chromium-headless-shell) loads the
page from a running server and Swagger UI lists every route of /openapi.json, not "Unable to render this
definition" (what Swagger UI 4.x shows for the OpenAPI 3.1 that FastAPI writes). Skipped where no
Chromium is installed, except in CI (.ci/run installs it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import httpx
import pytest

from test_serve_schema import running_server

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser")


def _browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def test_docs_page_lists_every_route_in_headless_chromium(tiny_model_dir, tmp_path):
    browser = _browser()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("no headless Chromium in CI: apt-get install chromium-headless-shell")
        pytest.skip("no headless Chromium: apt-get install chromium-headless-shell")
    with running_server(tiny_model_dir, tmp_path / "server.log") as base:
        paths = set(httpx.get(f"{base}/openapi.json", timeout=10).json()["paths"])
        # --virtual-time-budget lets the page's scripts run (fetch the schema, render) before the DOM is dumped.
        r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
                            "--dump-dom", f"{base}/docs"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert "Unable to render" not in dom, dom[-3000:]
    listed = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert paths == {"/healthz", "/readyz", "/metrics", "/v1/classify", "/v1/model"}
    assert listed == paths, dom[-3000:]
    assert "OAS 3.1" in dom
