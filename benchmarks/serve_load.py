"""Load-test `acceltune serve` on loopback with wrk: every scenario of the serving issue's Measure section.

    python benchmarks/serve_load.py --model MODEL_DIR --baseline-model HF_DIR [--duration 10] [--warmup 3]

MODEL_DIR is what `acceltune serve` loads (for the targets: an `acceltune export --format onnx
--quantize int8` directory); HF_DIR is a transformers directory for the hand-written baseline
(benchmarks/baseline_pipeline_server.py; default: MODEL_DIR's ``source_model`` if the export recorded
one, else the baseline is skipped). Messages are Banking77 test texts. Needs `wrk` (apt-get install
wrk): a Python load generator on the same cores would measure itself.

Scenarios, each on a fresh server, one message per request unless named ``...32``:

- ``batching``: dynamic batching (server defaults), 64 connections, closed loop.
- ``nobatch``: the same server with ``--max-batch-size 1``.
- ``baseline``: the FastAPI + transformers pipeline server one writes by hand.
- ``overload``: 4x the sustainable request rate (the ``batching`` run's), open loop: requests go out on a
  schedule at that rate (wrk's ``delay()`` hands each the next slot, SCHEDULE) over 2,048 connections, enough
  for the accepted requests that wait about a second in the queue; 8 sequential probe
  clients time rejections and accepted requests apart (wrk's histogram mixes 200s and 429s) and check
  that every 429 carries ``Retry-After``.
- ``overload_closed``: 4x the connections (256), unpaced, the server's queue bounds (``--max-queue-wait-ms``
  1000: what drains in a second at the measured rate): goodput (200s per second) against ``batching``'s,
  and the accepted requests' latency from the probes (by Little's law about connections / throughput).
- ``overload_closed_storm``: the same with ``--max-queue 128``, fewer than the connections: wrk re-sends a
  refused request at once (it ignores Retry-After), so this is a storm of refusals that the event loop
  must answer (the worst case, for the record; not a target).
- ``sigterm``: SIGTERM half-way through a 64-connection run; the server's own last log line counts the
  requests that entered the app and those answered (exact: a request the app accepted and never answered
  shows as unanswered), and its exit status must be 0.
- ``batching_w1`` / ``nobatch_w1``: ``batching`` / ``nobatch`` with ``--batch-workers 1`` (one batch at a
  time over every core, against the default of two at once on a machine with 2 cores or more); any scenario
  name ending ``_wN`` adds ``--batch-workers N``.
- ``batching32`` / ``nobatch32`` / ``baseline32``: 32 messages per request (not in the default list).
- ``model``: no server, no HTTP: the same model through ``acceltune.Predictor`` in this process, one message
  per call against 64 messages per call cut by the server's token budget (what a full batch costs). Its
  ratio is the most batching can gain on this model and machine: the server adds the same HTTP work to
  both sides, so ``batching_vs_nobatch`` can only come out below it.

Status counts come from the server's /metrics (exact; wrk only counts non-2xx). Prints one JSON line per
scenario, then a summary line with the ratios and the issue's targets. With the defaults a full run
takes about 5-6 minutes (ten server starts; each scenario warm-up + duration seconds).

Importable (other benchmarks reuse it): ``start_server(cmd, port)`` (a context manager; the server is
ready inside it, and SIGTERMed and reaped after), ``run_wrk(url, bodies, connections, duration)``,
``status_counts(url)``, ``Probes``, ``message_bodies(messages, per_request)``, ``load_messages()``,
``free_port()``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "banking77" / "test.csv"
if not DATA.exists():
    DATA = Path("/work/shared/data/banking77/test.csv")

LUA = r"""
local bodies = {
%(bodies)s
}
local reqs = {}
local idx = 0
init = function(args)
  local headers = {%(headers)s}
  for i, b in ipairs(bodies) do reqs[i] = wrk.format("POST", "%(path)s", headers, b) end
  idx = math.random(#reqs)
end
request = function()
  idx = idx %% #reqs + 1
  return reqs[idx]
end
%(delay)s
done = function(summary, latency, requests)
  local f = io.open("%(out)s", "w")
  f:write(string.format('{"requests": %%d, "duration_us": %%d, "non2xx": %%d, "connect_errors": %%d, ' ..
    '"read_errors": %%d, "write_errors": %%d, "timeouts": %%d, "p50_us": %%d, "p95_us": %%d, "p99_us": %%d, ' ..
    '"max_us": %%d, "mean_us": %%f}',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean))
  f:close()
end
"""

#: An open-loop arrival schedule at ``rate`` requests/s for one wrk thread: wrk calls delay() before writing
#: each request, and each call takes the next slot of the thread's schedule (t0 + k / rate), so requests go out
#: at the rate whatever the latency, as long as a connection is free. A schedule more than a second behind
#: (every connection waiting for an answer) restarts from now rather than bursting to catch up.
SCHEDULE = r"""
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } acceltune_timespec;
           int clock_gettime(int clk, acceltune_timespec *tp); ]]
local ts = ffi.new("acceltune_timespec")
local function now_ms() ffi.C.clock_gettime(1, ts); return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6 end
local period_ms, next_ms = %(period_ms).6f, nil
delay = function()
  local t = now_ms()
  if next_ms == nil or next_ms < t - 1000 then next_ms = t end
  next_ms = next_ms + period_ms
  local d = next_ms - t
  if d <= 0 then return 0 end
  return math.floor(d)
end
"""

SOCKET_ERRORS = ("connect_errors", "read_errors", "write_errors", "timeouts")


# ---------------------------------------------------------------------------------------- the API

def load_messages(n: int = 3080) -> list[str]:
    with open(DATA, newline="") as f:
        return [row["text"] for row in csv.DictReader(f)][:n]


def message_bodies(messages: Sequence[str], per_request: int = 1, limit: int = 1000) -> list[str]:
    """JSON request bodies for /v1/classify: one text, or ``per_request`` texts per body."""
    bodies = []
    for i in range(0, len(messages) - per_request + 1, per_request):
        chunk = list(messages[i:i + per_request])
        bodies.append(json.dumps({"inputs": chunk[0] if per_request == 1 else chunk}))
        if len(bodies) >= limit:
            break
    return bodies


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@dataclass
class Server:
    """A started server process; ``stop()`` sends SIGTERM and returns the exit status."""

    proc: subprocess.Popen
    url: str
    log_path: Path | None = None
    exit_code: int | None = None

    def stop(self, timeout: float = 60.0) -> int:
        if self.exit_code is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.exit_code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.exit_code = self.proc.wait()
        return self.exit_code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


@contextlib.contextmanager
def start_server(cmd: Sequence[str], port: int, *, env: dict | None = None, log_path: str | Path | None = None,
                 ready_path: str = "/readyz", ready_timeout: float = 180.0) -> Iterator[Server]:
    """Run ``cmd`` (a server listening on 127.0.0.1:``port``) until ``ready_path`` answers 200; yield it;
    SIGTERM it and reap it on leaving (also on error). stdout/stderr go to ``log_path`` (or nowhere)."""
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(list(cmd), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(proc, f"http://127.0.0.1:{port}", Path(log_path) if log_path else None)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode} before it was ready: {server.log()[-2000:]}")
            with contextlib.suppress(OSError):
                if get(server.url, ready_path, 1.0)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"server not ready within {ready_timeout:g} s")
            time.sleep(0.25)
        yield server
    finally:
        server.stop()
        if log is not subprocess.DEVNULL:
            log.close()


def run_wrk(url: str, bodies: str | Sequence[str], connections: int, duration: float, *, threads: int = 1,
            path: str = "/v1/classify", headers: dict[str, str] | None = None,
            rate: float | None = None, timeout_s: float = 5.0) -> dict:
    """POST ``bodies`` (cycled) to ``url + path`` from ``connections`` closed-loop connections for ``duration``
    seconds; ``rate``: requests go out on an open-loop schedule of that many per second over all threads (SCHEDULE). Returns wrk's
    counts and latency percentiles (ms) and requests_per_s (all responses; wrk counts non-2xx apart)."""
    bodies = [bodies] if isinstance(bodies, str) else list(bodies)
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    with tempfile.TemporaryDirectory(prefix="wrk_") as tmp:
        lua, out = Path(tmp) / "load.lua", Path(tmp) / "out.json"
        for b in bodies:
            if "]==]" in b:
                raise ValueError("a body holds ']==]', which ends a Lua long string")
        lua.write_text(LUA % {
            "bodies": ",\n".join(f"[==[{b}]==]" for b in bodies),
            "headers": ", ".join(f'["{k}"] = "{v}"' for k, v in hdrs.items()),
            "path": path, "out": str(out),
            "delay": SCHEDULE % {"period_ms": 1000.0 * threads / rate} if rate else ""})
        cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s", "--timeout", f"{timeout_s:g}s",
               "-s", str(lua), url]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=duration + 60)
        w = json.loads(out.read_text())
    seconds = w["duration_us"] / 1e6
    return {"requests": w["requests"], "non2xx": w["non2xx"], "duration_s": round(seconds, 2),
            "requests_per_s": round(w["requests"] / seconds, 1),
            "latency_ms": {k: w[f"{k}_us"] / 1e3 for k in ("p50", "p95", "p99", "max")},
            "mean_latency_ms": w["mean_us"] / 1e3, **{k: w[k] for k in SOCKET_ERRORS}}


def status_counts(url: str, path: str = "/v1/classify") -> dict[str, float]:
    """acceltune_http_requests_total for ``path``, by status (parsed with prometheus_client's parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(get(url, "/metrics")[1].decode()):
        for s in family.samples:
            if s.name == "acceltune_http_requests_total" and s.labels.get("path") == path:
                out[s.labels["status"]] = s.value
    return out


class Probes:
    """``clients`` sequential clients timing each response by status (rejections apart from accepted
    requests) and noting 429s without Retry-After. Use as a context manager around a load."""

    def __init__(self, url: str, bodies: Sequence[str], clients: int = 8, path: str = "/v1/classify",
                 headers: dict[str, str] | None = None):
        u = urlsplit(url)
        self.host, self.port, self.path = u.hostname, u.port, path
        self.bodies = [b.encode() for b in bodies]
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.stop = threading.Event()
        self.samples: list[tuple[int, float]] = []
        self.missing_retry_after = 0
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> "Probes":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)

    def _client(self, i: int) -> None:
        body = self.bodies[i % len(self.bodies)]
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        while not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                conn.request("POST", self.path, body, self.headers)
                r = conn.getresponse()
                r.read()
                self.samples.append((r.status, time.perf_counter() - t0))
                if r.status == 429 and r.getheader("Retry-After") is None:
                    self.missing_retry_after += 1
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            # A random think time: probes sample, they are not load; and a fixed one would send each probe's next
            # request just as a batch completes (when its answer came), the one moment the queue has room.
            self.stop.wait(random.expovariate(1 / 0.02))
        conn.close()

    def summary(self) -> dict:
        rej = [s for st, s in self.samples if st in (429, 503)]
        acc = [s for st, s in self.samples if st == 200]
        return {"clients": len(self.threads), "samples": len(self.samples), "rejections": len(rej), "accepted": len(acc),
                "other_statuses": sorted({st for st, _ in self.samples if st not in (200, 429, 503)}),
                "missing_retry_after": self.missing_retry_after,
                "rejection_latency_ms": {"p50": _ms(percentile(rej, 50)), "p99": _ms(percentile(rej, 99)),
                                         "max": _ms(max(rej, default=None))},
                "accepted_latency_ms": {"p50": _ms(percentile(acc, 50)), "p99": _ms(percentile(acc, 99))}}


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1e3, 2)


#: The server's last log line (acceltune.serve.lifespan): requests that entered the app and those answered.
STOPPED = re.compile(r"stopped: (\d+) requests? received, (\d+) answered")


# ------------------------------------------------------------------------------------ scenarios

@dataclass
class Bench:
    args: argparse.Namespace
    env: dict
    messages: list[str]
    workdir: Path
    results: dict = field(default_factory=dict)

    def model(self, name: str, seconds: float = 4.0, batch: int = 64) -> dict:
        from acceltune.inference.batches import SERVE_CPU_BATCH_TOKENS, default_batch_tokens
        from acceltune.inference.predictor import Predictor

        pred = Predictor(self.args.model, backend=self.args.backend)
        pred.max_batch_tokens = default_batch_tokens(pred.backend, SERVE_CPU_BATCH_TOKENS)  # as the server sets it
        rng = random.Random(0)
        rates = {}
        for size in (1, batch):
            pred.outputs(self.messages[:size])  # warm-up
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                pred.outputs(rng.sample(self.messages, size))
                done += size
            rates[size] = done / (time.perf_counter() - start)
        r = {"scenario": name, "max_batch_tokens": pred.max_batch_tokens, "messages_per_s_one_per_call": round(rates[1], 1),
             f"messages_per_s_{batch}_per_call": round(rates[batch], 1), "batching_ceiling": round(rates[batch] / rates[1], 2)}
        self.results[name] = r
        print(json.dumps(r), flush=True)
        return r

    def serve_cmd(self, port: int, batch_size: int, queue: int, workers: int | None = None) -> list[str]:
        a = self.args
        queue_flags = ["--max-queue", str(queue), "--max-inputs", str(min(256, queue))] if queue else []
        return [sys.executable, "-m", "acceltune", "serve", a.model, "--backend", a.backend, "--port", str(port),
                "--max-batch-size", str(batch_size), "--max-wait-ms", str(a.max_wait_ms), *queue_flags,
                *(["--batch-workers", str(workers)] if workers else []), *a.server_arg]

    def closed(self, name: str, cmd: list[str], port: int, per_request: int, connections: int, *, acceltune: bool = True,
               probe: bool = False) -> dict:
        a = self.args
        bodies = message_bodies(self.messages, per_request)
        with start_server(cmd, port, env=self.env, log_path=self.workdir / f"{name}.log") as srv:
            if a.warmup > 0:
                run_wrk(srv.url, bodies, connections, a.warmup, threads=a.threads)
            before = status_counts(srv.url) if acceltune else {}
            with (Probes(srv.url, bodies) if probe else contextlib.nullcontext()) as probes:
                w = run_wrk(srv.url, bodies, connections, a.duration, threads=a.threads)
            after = status_counts(srv.url) if acceltune else {}
        return self.result(name, per_request, connections, w, before, after, acceltune, probes)

    def result(self, name, per_request, connections, w, before, after, acceltune, probes) -> dict:
        seconds = w["duration_s"]
        if acceltune:  # by status, from the server's own counter (wrk only counts non-2xx)
            counts = {k: int(after.get(k, 0) - before.get(k, 0)) for k in sorted(set(after) | set(before))}
            counts = {k: v for k, v in counts.items() if v}
        else:
            counts = {"2xx": w["requests"] - w["non2xx"], "non2xx": w["non2xx"]}
        ok = w["requests"] - w["non2xx"]  # as wrk counted them (the server also finishes those cut off at the end)
        r = {"scenario": name, "messages_per_request": per_request, "connections": connections, "duration_s": seconds,
             "requests_per_s": w["requests_per_s"], "ok_requests_per_s": round(ok / seconds, 1),
             "messages_per_s": round(ok * per_request / seconds, 1), "latency_ms": w["latency_ms"],
             "status_counts": counts, "socket_errors": {k: w[k] for k in SOCKET_ERRORS if w[k]}}
        if probes is not None:
            r["probe"] = probes.summary()
        return r

    def emit(self, r: dict) -> dict:
        self.results[r["scenario"]] = r
        print(json.dumps(r), flush=True)
        return r

    # -- one method per scenario kind

    def batching(self, name: str, per_request: int, batch_size: int | None = None, workers: int | None = None) -> dict:
        port = free_port()
        queue = self.args.max_queue_32 if per_request > 1 else self.args.max_queue
        cmd = self.serve_cmd(port, batch_size or self.args.max_batch_size, queue, workers)
        return self.emit(self.closed(name, cmd, port, per_request, self.args.connections))

    def baseline(self, name: str, per_request: int) -> dict | None:
        if not self.args.baseline_model:
            print(json.dumps({"scenario": name, "skipped": "no --baseline-model"}), flush=True)
            return None
        port = free_port()
        cmd = [sys.executable, str(ROOT / "benchmarks" / "baseline_pipeline_server.py"), self.args.baseline_model,
               "--port", str(port)]
        return self.emit(self.closed(name, cmd, port, per_request, self.args.connections, acceltune=False))

    def sustainable(self) -> float:
        a = self.args
        rate = a.sustainable_rps or (self.results["batching"]["ok_requests_per_s"] if "batching" in self.results else None)
        if not rate:
            raise SystemExit("the overload scenarios need the batching scenario first, or --sustainable-rps")
        return rate

    def overload(self) -> dict:
        """Open loop: overload_factor x the sustainable rate, sent on a schedule over overload_connections."""
        a = self.args
        sustainable = self.sustainable()
        target = a.overload_factor * sustainable
        port = free_port()
        bodies = message_bodies(self.messages)
        with start_server(self.serve_cmd(port, a.max_batch_size, a.max_queue), port, env=self.env,
                          log_path=self.workdir / "overload.log") as srv:
            run_wrk(srv.url, bodies, a.overload_connections, max(a.warmup, 2.0), threads=a.threads, rate=target)
            before = status_counts(srv.url)
            with Probes(srv.url, bodies) as probes:
                w = run_wrk(srv.url, bodies, a.overload_connections, a.duration, threads=a.threads, rate=target)
            after = status_counts(srv.url)
        r = self.result("overload", 1, a.overload_connections, w, before, after, True, probes)
        r["offered"] = {"sustainable_rps": sustainable, "target_rps": round(target, 1),
                        "achieved_vs_sustainable": round(r["requests_per_s"] / sustainable, 2),
                        "goodput_vs_sustainable": round(r["status_counts"].get("200", 0) / r["duration_s"] / sustainable, 2)}
        return self.emit(r)

    def overload_closed(self, name: str, queue: int | None) -> dict:
        a = self.args
        port = free_port()
        connections = int(a.connections * a.overload_factor)
        r = self.closed(name, self.serve_cmd(port, a.max_batch_size, queue), port, 1, connections, probe=True)
        r["max_queue"] = queue
        good = r["status_counts"].get("200", 0) / r["duration_s"]
        r["goodput_rps"] = round(good, 1)
        if "batching" in self.results:
            r["goodput_vs_batching"] = round(good / self.results["batching"]["ok_requests_per_s"], 2)
        return self.emit(r)

    def sigterm(self) -> dict:
        """SIGTERM half-way through a closed-loop run: every request the app accepted must be answered."""
        a = self.args
        port = free_port()
        bodies = message_bodies(self.messages)
        log_path = self.workdir / "sigterm.log"
        with start_server(self.serve_cmd(port, a.max_batch_size, a.max_queue), port, env=self.env,
                          log_path=log_path) as srv:
            half = max(a.duration / 2, 2.0)
            timer = threading.Timer(half, srv.proc.send_signal, (signal.SIGTERM,))
            timer.start()
            try:
                w = run_wrk(srv.url, bodies, a.connections, 2 * half, threads=a.threads)
            finally:
                timer.cancel()
            rc = srv.stop()
        m = STOPPED.search(srv.log())
        received, answered = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        r = {"scenario": "sigterm", "connections": a.connections, "sigterm_after_s": round(half, 1),
             "exit_code": rc, "received": received, "answered": answered,
             "unanswered": None if m is None else received - answered,
             "wrk": {"responses": w["requests"], "non2xx": w["non2xx"], **{k: w[k] for k in SOCKET_ERRORS if w[k]}}}
        if m is None:
            r["error"] = "the server's 'stopped:' log line is missing: " + srv.log()[-500:]
        return self.emit(r)


def summary(results: dict, overload_factor: float) -> dict:
    s: dict = {"summary": True}
    base = results.get("baseline")
    for suffix in ("", "_w1"):  # server defaults, and one batch worker
        b, nb = results.get("batching" + suffix), results.get("nobatch" + suffix)
        if b and nb:
            s["batching_vs_nobatch" + suffix] = round(b["ok_requests_per_s"] / nb["ok_requests_per_s"], 2)
        if b and base:
            s["batching_vs_baseline" + suffix] = round(b["ok_requests_per_s"] / max(base["ok_requests_per_s"], 1e-9), 1)
        if b:
            s["batching_rps" + suffix] = b["ok_requests_per_s"]
            s["batching_p99_ms" + suffix] = b["latency_ms"]["p99"]
    b, nb = results.get("batching"), results.get("nobatch")
    if b:
        s["target_p99_100ms_no5xx"] = (b["latency_ms"]["p99"] <= 100 and not any(k.startswith("5") for k in b["status_counts"]))
    if b and nb:
        s["target_2x_nobatch"] = s["batching_vs_nobatch"] >= 2.0
    if b and base:
        s["target_15x_baseline"] = s["batching_vs_baseline"] >= 15
    if "model" in results:
        s["model_batching_ceiling"] = results["model"]["batching_ceiling"]
    if "batching32" in results:
        s["messages_per_s_32"] = results["batching32"]["messages_per_s"]
    o = results.get("overload")
    if o:
        p = o["probe"]
        other = [k for k in o["status_counts"] if k not in ("200", "429")] + p["other_statuses"]
        s["overload"] = {"status_counts": o["status_counts"], "rejection_p99_ms": p["rejection_latency_ms"]["p99"],
                         "achieved_vs_sustainable": o["offered"]["achieved_vs_sustainable"],
                         "goodput_vs_sustainable": o["offered"]["goodput_vs_sustainable"]}
        s["target_overload"] = (not other and not o["socket_errors"] and p["missing_retry_after"] == 0
                                and p["rejection_latency_ms"]["p99"] is not None and p["rejection_latency_ms"]["p99"] <= 50
                                and o["offered"]["goodput_vs_sustainable"] >= 0.7
                                and o["offered"]["achieved_vs_sustainable"] >= overload_factor * 0.9)
    for name in ("overload_closed", "overload_closed_storm"):
        c = results.get(name)
        if c:
            s[name] = {"max_queue": c["max_queue"], "goodput_rps": c["goodput_rps"],
                       "goodput_vs_batching": c.get("goodput_vs_batching"), "status_counts": c["status_counts"],
                       "accepted_p99_ms": c["probe"]["accepted_latency_ms"]["p99"],
                       "rejection_p99_ms": c["probe"]["rejection_latency_ms"]["p99"]}
    c = results.get("overload_closed")
    if c:
        s["target_overload_closed_goodput_90pct"] = c.get("goodput_vs_batching") is not None and c["goodput_vs_batching"] >= 0.9
    t = results.get("sigterm")
    if t:
        s["sigterm"] = {k: t[k] for k in ("received", "answered", "unanswered", "exit_code")}
        s["target_sigterm_drops_nothing"] = t["unanswered"] == 0 and t["exit_code"] == 0
    return s


DEFAULT_SCENARIOS = "model,batching,nobatch,batching_w1,nobatch_w1,baseline,overload,overload_closed,overload_closed_storm,sigterm"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="the directory acceltune serve loads")
    p.add_argument("--baseline-model", help="transformers directory for the pipeline baseline")
    p.add_argument("--backend", default="auto")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load first")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--overload-factor", type=float, default=4.0, help="overload: this many times the sustainable request rate")
    p.add_argument("--overload-connections", type=int, default=2048,
                   help="connections that carry the open-loop overload (more than its rate x the accepted requests' latency)")
    p.add_argument("--sustainable-rps", type=float, help="the sustainable rate for overload (default: the batching run's)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=2.0)
    p.add_argument("--max-queue", type=int, help="for the 1-message and overload runs (default: the server's bounds)")
    p.add_argument("--storm-queue", type=int, default=128, help="--max-queue of overload_closed_storm (below its connections)")
    p.add_argument("--max-queue-32", type=int, default=4096, help="for the 32-message runs (64 x 32 in flight)")
    p.add_argument("--scenarios", default=DEFAULT_SCENARIOS,
                   help=f"comma-separated (default {DEFAULT_SCENARIOS}; also batching32, nobatch32, baseline32)")
    p.add_argument("--server-arg", action="append", default=[], help="extra `acceltune serve` argument (repeatable)")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    import resource  # the paced overload holds ~1,000 sockets in wrk and in the server (children inherit the limit)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else max(soft, 65536), hard))
    if args.baseline_model is None:
        info = json.loads((Path(args.model) / "acceltune.json").read_text())
        args.baseline_model = (info.get("extra") or {}).get("source_model")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        bench = Bench(args, env, load_messages(), Path(tmp))
        for name in (s.strip() for s in args.scenarios.split(",") if s.strip()):
            workers = int(name.rsplit("_w", 1)[1]) if re.fullmatch(r".+_w\d+", name) else None
            base = re.sub(r"_w\d+$", "", name)
            per_request = 32 if base.endswith("32") else 1
            base = base.removesuffix("32")
            if name == "model":
                bench.model(name)
            elif base == "batching":
                bench.batching(name, per_request, workers=workers)
            elif base == "nobatch":
                bench.batching(name, per_request, batch_size=1, workers=workers)
            elif base == "baseline":
                bench.baseline(name, per_request)
            elif name == "overload":
                bench.overload()
            elif name == "overload_closed":
                bench.overload_closed(name, args.max_queue)
            elif name == "overload_closed_storm":
                bench.overload_closed(name, args.storm_queue)
            elif name == "sigterm":
                bench.sigterm()
            else:
                raise SystemExit(f"unknown scenario {name!r}")
    s = summary(bench.results, args.overload_factor)
    s["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(s), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
