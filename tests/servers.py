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
