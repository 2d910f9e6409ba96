"""Several server processes on one port (`--processes N`, acceltune.serve.workers): every accepted request is
answered through a SIGTERM drain, /metrics sums every process, a failure in one stops all in one line, and
the servers whose state lives in their process refuse it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from acceltune.errors import USER_ERROR_PREFIX, UserError
from acceltune.serve import ServeSettings
from servers import free_port, metric

TEXTS = ["I love this movie", "this was terrible", "an ordinary afternoon"]


class Server:
    """``python -m acceltune ARGS`` with its output in a file (a pipe left unread could fill and block it)."""

    def __init__(self, log: Path, *args: str):
        self.log = log
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        with open(log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "acceltune", *args], env=env, stdout=out,
                                         stderr=subprocess.STDOUT)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, typ, value, tb) -> None:
        if typ is not None and self.proc.poll() is None:  # the test failed: do not wait for a drain
            self.proc.kill()
            self.proc.wait()

    def poll(self):
        return self.proc.poll()

    def send_signal(self, sig) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 120.0) -> tuple[int, str]:
        """The exit code and everything it wrote (killed if it has not exited within ``timeout``)."""
        try:
            rc = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return rc, self.log.read_text()


def until(condition, what: str, server: Server, within_s: float = 120.0) -> None:
    deadline = time.time() + within_s
    while not condition():  # bounded poll
        assert server.poll() is None, f"server exited while waiting for {what}: {server.log.read_text()}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_two_processes_drain_every_accepted_request_and_share_one_metrics(tiny_model_dir, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # A batching window far longer than the test keeps every request queued until SIGTERM: only the drain answers.
    with Server(tmp_path / "log", "serve", str(tiny_model_dir), "--port", str(port), "--processes", "2", "--backend",
                "torch", "--max-wait-ms", "120000", "--max-batch-size", "256", "--request-timeout-s", "300") as proc:
        until(lambda: ready(base), "/readyz", proc)
        # The smallest over the processes: both loaded (each writes its gauges every second).
        until(lambda: metric(base, "acceltune_ready") == 1.0, "acceltune_ready 1", proc)

        def call(i):
            return httpx.post(f"{base}/v1/classify", json={"inputs": [TEXTS[i % 3]] * (1 + i % 3)}, timeout=120)

        with ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(call, i) for i in range(12)]
            want = sum(1 + i % 3 for i in range(12))
            # Queued in both processes or one: the gauge is their sum, whichever process answers the scrape.
            until(lambda: metric(base, "acceltune_queue_depth", {"batcher": "classify"}) == want, "every input queued", proc)
            assert not any(f.done() for f in futures)
            proc.send_signal(signal.SIGTERM)
            responses = [f.result() for f in futures]
        rc, out = proc.wait()
    assert [r.status_code for r in responses] == [200] * 12, out
    assert [len(r.json()["results"]) for r in responses] == [1 + i % 3 for i in range(12)]
    assert rc == 0, out
    assert re.search(r"2 server processes on http://127\.0\.0\.1:\d+ \(pids \d+, \d+\)", out), out
    stopped = re.findall(r"stopped: (\d+) requests received, (\d+) answered", out)
    assert len(stopped) == 2 and all(a == b for a, b in stopped), out  # each process answered all it received
    assert sum(int(a) for a, _ in stopped) >= 12, out
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz", timeout=2)


def test_counters_sum_every_process(tiny_model_dir, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with Server(tmp_path / "log", "serve", str(tiny_model_dir), "--port", str(port), "--processes", "2", "--backend", "torch") as proc:
        until(lambda: ready(base), "/readyz", proc)
        # New connections each time: the kernel hands them to either process.
        statuses = [httpx.post(f"{base}/v1/classify", json={"inputs": [TEXTS[i % 3]]}, timeout=30).status_code
                    for i in range(40)]
        answered = metric(base, "acceltune_http_requests_total", {"path": "/v1/classify", "status": "200"})
        inputs = metric(base, "acceltune_inputs_total", {"batcher": "classify"})
        proc.send_signal(signal.SIGTERM)
        rc, out = proc.wait()
    assert statuses == [200] * 40
    assert answered == 40 and inputs == 40, out
    assert rc == 0, out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's (prctl)")
def test_the_processes_stop_when_their_parent_is_killed(tiny_model_dir, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with Server(tmp_path / "log", "serve", str(tiny_model_dir), "--port", str(port), "--processes", "2", "--backend", "torch") as proc:
        until(lambda: ready(base), "/readyz", proc)
        pids = [int(p) for p in re.search(r"\(pids (\d+), (\d+)\)", proc.log.read_text()).groups()]
        proc.send_signal(signal.SIGKILL)  # no drain is forwarded: the kernel tells the processes
        proc.wait()

        def gone(pid: int) -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"  # exited, not yet reaped by init

        deadline = time.time() + 60
        while not all(gone(pid) for pid in pids):  # bounded poll
            assert time.time() < deadline, f"orphaned server processes {pids}: {proc.log.read_text()}"
            time.sleep(0.1)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz", timeout=2)


def test_a_process_that_cannot_load_stops_all_in_one_line(tmp_path):
    rc, out = Server(tmp_path / "log", "serve", str(tmp_path / "missing"), "--port", str(free_port()), "--processes", "2").wait()
    assert rc == 2, out
    errors = [line for line in out.splitlines() if line.startswith(USER_ERROR_PREFIX)]
    assert len(errors) == 1 and "missing" in errors[0], out
    assert "Traceback" not in out


def test_a_port_in_use_is_one_line(tiny_model_dir, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc, out = Server(tmp_path / "log", "serve", str(tiny_model_dir), "--port", str(port), "--processes", "2").wait()
    assert rc == 2, out
    assert f"cannot listen on 127.0.0.1:{port}" in out and "--port" in out, out


def test_processes_share_out_the_inference_threads(tiny_model_dir):
    from acceltune.cpu import usable_cpu_count

    cores = usable_cpu_count()
    assert ServeSettings(model_dir=tiny_model_dir, processes=2, batch_workers=1).inference_threads == max(1, cores // 2)
    assert ServeSettings(model_dir=tiny_model_dir, processes=2, batch_workers=2).inference_threads == max(1, cores // 4)
    assert ServeSettings(model_dir=tiny_model_dir, processes=2, threads=3).inference_threads == 3  # given: per process
    with pytest.raises(UserError, match="--processes"):
        ServeSettings(model_dir=tiny_model_dir, processes=0)
