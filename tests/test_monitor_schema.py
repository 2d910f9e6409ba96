"""`acceltune monitor serve` against its own OpenAPI document: schemathesis with all checks (what the schema
allows is accepted, what it forbids refused, every answer matches its documented status and body), as
tests/test_serve_schema.py does for `acceltune serve`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from servers import running_server


def test_schemathesis_finds_no_disagreement_between_schema_and_monitor_server(int8_dir, tmp_path):
    pytest.importorskip("schemathesis", reason="pip install schemathesis (in the dev extra)")
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    assert st, "schemathesis is installed but its 'st' command is not on PATH"
    args = ["monitor", "serve", int8_dir, "--db", f"sqlite:///{tmp_path / 'm.db'}", "--min-items", "2"]
    with running_server(args, tmp_path / "server.log") as base:
        schema = httpx.get(f"{base}/openapi.json", timeout=10).json()
        assert {"/v1/items", "/v1/index", "/v1/alerts", "/v1/entities"} <= set(schema["paths"])
        r = subprocess.run([st, "run", f"{base}/openapi.json", "--checks", "all", "--max-examples", "40",
                            "--workers", "1", "--seed", "1", "--no-color"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "No issues found" in r.stdout and "passed" in r.stdout, r.stdout[-3000:]
