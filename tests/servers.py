"""A real `acceltune` server process for tests that talk to it over HTTP (schemathesis, a browser):
``running_server(["assistant", MODEL_DIR, "--replies", ...], log)`` starts ``python -m acceltune ...`` on a
free port, waits (bounded) for /readyz, yields its base URL, stops it with SIGTERM and checks it exited 0
(drained)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(base: str, name: str, labels: dict | None = None) -> float:
    """One sample of the server's /metrics, parsed with prometheus_client's parser (so the exposition must stay
    valid); 0 when absent."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(httpx.get(f"{base}/metrics", timeout=5).text):
        for s in family.samples:
            if s.name == name and s.labels == (labels or {}):
                return s.value
    return 0.0


@contextlib.contextmanager
def running_server(args: Sequence[str], log: Path, *, ready_within_s: float = 60.0):
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "acceltune", *map(str, args), "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + ready_within_s
            while True:  # bounded poll of the readiness probe
                assert proc.poll() is None and time.time() < deadline, log.read_text()
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                time.sleep(0.1)
            yield base
        finally:
            proc.terminate()
            rc = proc.wait(30)
        # After the body (not when it failed): SIGTERM drains the server and it exits 0.
        assert rc == 0, f"exit code {rc} after SIGTERM: " + log.read_text()[-3000:]


def assert_schemathesis_finds_nothing(base: str, cwd: Path, max_examples: int) -> None:
    """schemathesis with all checks against the running server's /openapi.json: no disagreement between what
    the schema promises and what the server does (skipped where schemathesis is not installed)."""
    import shutil

    import pytest

    pytest.importorskip("schemathesis", reason="pip install schemathesis (in the dev extra)")
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    assert st, "schemathesis is installed but its 'st' command is not on PATH"
    r = subprocess.run([st, "run", f"{base}/openapi.json", "--checks", "all", "--max-examples", str(max_examples),
                        "--workers", "1", "--seed", "1", "--no-color"],
                       cwd=cwd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "No issues found" in r.stdout and "passed" in r.stdout, r.stdout[-3000:]
