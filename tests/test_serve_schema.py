"""The server against its own OpenAPI document, as clients nobody here wrote see it: schemathesis with all
checks on a running `acceltune serve` (what the schema allows is accepted, what it forbids is refused,
every answer matches its documented status, headers and body)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(model_dir: Path, log: Path, *args: str):
    port = _free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "acceltune", "serve", str(model_dir), "--port", str(port),
                                 "--backend", "torch", *args], env=env, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 60
            while True:  # bounded poll of the readiness probe
                assert proc.poll() is None and time.time() < deadline, log.read_text()
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                time.sleep(0.1)
            yield base
        finally:
            proc.terminate()
            proc.wait(30)


def test_schemathesis_finds_no_disagreement_between_schema_and_server(tiny_model_dir, tmp_path):
    pytest.importorskip("schemathesis", reason="pip install schemathesis (in the dev extra)")
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    assert st, "schemathesis is installed but its 'st' command is not on PATH"
    with running_server(tiny_model_dir, tmp_path / "server.log") as base:
        r = subprocess.run([st, "run", f"{base}/openapi.json", "--checks", "all", "--max-examples", "100",
                            "--workers", "1", "--seed", "1", "--no-color"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "No issues found" in r.stdout and "passed" in r.stdout, r.stdout[-3000:]
