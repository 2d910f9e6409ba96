"""`acceltune recommend serve` against its own OpenAPI document: schemathesis with all checks on a running
server (what the schema allows is accepted, what it forbids is refused, every answer as documented)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from acceltune import train
from acceltune.recommend.task import SequentialRecommendation
from servers import running_server
from test_recommend import recommend_config, small_settings, write_planted


def test_schemathesis_finds_no_disagreement_between_schema_and_recommend_server(tmp_path):
    pytest.importorskip("schemathesis", reason="pip install schemathesis (in the dev extra)")
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    assert st, "schemathesis is installed but its 'st' command is not on PATH"
    inter, _ = write_planted(tmp_path, users=30)
    train(recommend_config(inter, tmp_path / "model", max_steps=2), task=SequentialRecommendation(small_settings()), quiet=True)
    args = ["recommend", "serve", tmp_path / "model", "--db", f"sqlite:///{tmp_path / 'events.db'}"]
    with running_server(args, tmp_path / "server.log") as base:
        r = subprocess.run([st, "run", f"{base}/openapi.json", "--checks", "all", "--max-examples", "30",
                            "--workers", "1", "--seed", "1", "--no-color"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "No issues found" in r.stdout and "passed" in r.stdout, r.stdout[-3000:]
