"""A real browser for page tests: Debian's headless Chromium loads a URL, runs its scripts, and the DOM
comes back. Skipped where no Chromium is installed, except in CI (.ci/run installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser")


def browser_or_skip() -> str:
    browser = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("no headless Chromium in CI: apt-get install chromium-headless-shell")
        pytest.skip("no headless Chromium: apt-get install chromium-headless-shell")
    return browser


def rendered_dom(url: str, profile: Path, budget_ms: int = 20000, timeout: int = 120) -> str:
    """The page's DOM after its scripts ran for `budget_ms` of virtual time (fetches, timers, rendering).

    The background-networking flags keep Chromium from calling home (refused on a closed network)."""
    r = subprocess.run([browser_or_skip(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--no-first-run", f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                        "--dump-dom", url], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout
