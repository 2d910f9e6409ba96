"""The assistant's server against its own OpenAPI document, as in tests/test_serve_schema.py: schemathesis with
all checks on a running `acceltune assistant` (what the schema allows is answered, what it forbids is refused,
every answer matches its documented status, headers and body)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from servers import running_server
from test_assistant import REPLIES, constant_models


def test_schemathesis_finds_no_disagreement_between_schema_and_assistant(tmp_path):
    pytest.importorskip("schemathesis", reason="pip install schemathesis (in the dev extra)")
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    assert st, "schemathesis is installed but its 'st' command is not on PATH"
    model = constant_models(tmp_path / "models", {"confident": ("card_arrival", 0.9)})["confident"]
    replies = tmp_path / "replies.yaml"
    replies.write_text(REPLIES)
    args = ["assistant", model, "--replies", replies, "--db", f"sqlite:///{tmp_path / 'a.db'}", "--backend", "torch"]
    with running_server(args, tmp_path / "server.log") as base:
        r = subprocess.run([st, "run", f"{base}/openapi.json", "--checks", "all", "--max-examples", "50",
                            "--workers", "1", "--seed", "1", "--no-color"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "No issues found" in r.stdout and "passed" in r.stdout, r.stdout[-3000:]
