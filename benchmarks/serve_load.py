"""Load-test `acceltune serve` on loopback with wrk, against batching off and a plain pipeline server.

    python benchmarks/serve_load.py --model MODEL_DIR [--baseline-model HF_DIR] [--duration 15] [--connections 64]

MODEL_DIR is what `acceltune serve` loads (for the targets: an `acceltune export --format onnx
--quantize int8` directory); HF_DIR is a transformers directory for the baseline
(benchmarks/baseline_pipeline_server.py; default: MODEL_DIR's ``source_model`` if the export recorded
one, else it is skipped). Messages are Banking77 test texts. Needs `wrk` (apt-get install wrk): a
Python load generator on the same cores would measure itself.

Scenarios (each a fresh server): ``batching`` (dynamic batching), ``nobatch`` (--max-batch-size 1),
``baseline`` (pipeline server), each with 1 and 32 messages per request; ``overload``: the batching
server offered 4x the sustainable request rate (the ``batching`` run's), paced over 1,024 connections
(wrk's ``delay()``: each connection waits connections/rate between requests); ``overload_closed``: 4x
the connections, unpaced (a closed loop: by Little's law its latency is connections / throughput,
whatever the server does, so it shows saturation, not the cost of a rejection). Status counts come from the server's /metrics (exact; wrk
only counts non-2xx); in the overload run a sequential probe client measures the latency of
rejections (wrk's histogram mixes 200s and 429s). Prints one JSON line per scenario, then a
summary line with the ratios and the targets.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

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
  local headers = {["Content-Type"] = "application/json"%(auth)s}
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


def load_messages(n: int = 3080) -> list[str]:
    with open(DATA, newline="") as f:
        return [row["text"] for row in csv.DictReader(f)][:n]


def classify_body(chunk: list[str]) -> dict:
    """/v1/classify's body for one request's messages."""
    return {"inputs": chunk[0] if len(chunk) == 1 else chunk}


def write_lua(path: Path, messages: list[str], per_request: int, out: Path, api_key: str | None,
              delay_ms: float | None = None, route: str = "/v1/classify", body_of=classify_body) -> None:
    """``route`` and ``body_of`` (one request's messages -> its JSON body): what each request posts."""
    bodies = []
    for i in range(0, len(messages) - per_request + 1, per_request):
        chunk = messages[i:i + per_request]
        body = json.dumps(body_of(chunk))
        assert "]==]" not in body
        bodies.append(f"[==[{body}]==]")
        if len(bodies) >= 1000:
            break
    auth = f', ["Authorization"] = "Bearer {api_key}"' if api_key else ""
    # wrk waits delay() ms after each response before a connection's next request: a paced load.
    delay = f"delay = function() return {delay_ms:.0f} end" if delay_ms else ""
    path.write_text(LUA % {"bodies": ",\n".join(bodies), "auth": auth, "out": str(out), "delay": delay, "path": route})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before it was ready")
        try:
            if get(port, "/readyz", 1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise SystemExit("server not ready in time")


def status_counts(port: int, route: str = "/v1/classify") -> dict[str, float]:
    """acceltune_http_requests_total for ``route``, by status."""
    text = get(port, "/metrics")[1].decode()
    out = {}
    for m in re.finditer(r'^acceltune_http_requests_total\{path="%s",status="(\d+)"\} ([0-9.e+]+)$' % re.escape(route), text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def run_wrk(port: int, lua: Path, connections: int, duration: float, threads: int, out: Path) -> dict:
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s", "--timeout", "5s",
           "-s", str(lua), f"http://127.0.0.1:{port}"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


PROBES = 8


class Probe(threading.Thread):
    """One sequential client measuring each response's latency by status (for rejection latency)."""

    def __init__(self, port: int, body: bytes, api_key: str | None):
        super().__init__(daemon=True)
        self.port, self.body, self.stop, self.samples = port, body, threading.Event(), []
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/classify", self.body, self.headers)
                r = conn.getresponse()
                r.read()
                self.samples.append((r.status, time.perf_counter() - t0))
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            time.sleep(0.005)
        conn.close()


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


def scenario(name: str, server_cmd: list[str], port: int, messages: list[str], per_request: int, connections: int,
             duration: float, warmup: float, threads: int, api_key: str | None, acceltune: bool, probe: bool,
             env: dict, workdir: Path, delay_ms: float | None = None, route: str = "/v1/classify",
             body_of=classify_body) -> dict:
    proc = subprocess.Popen(server_cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(workdir / f"{name}.log", "w"),
                            start_new_session=True)
    try:
        wait_ready(port, proc)
        lua, out = workdir / f"{name}.lua", workdir / f"{name}.json"
        write_lua(lua, messages, per_request, out, api_key, delay_ms, route, body_of)
        if warmup > 0:
            w = run_wrk(port, lua, connections, warmup, threads, out)
            if delay_ms:
                # Each connection's cycle is delay + latency: take the warm-up's mean latency off the delay so
                # the measured run offers the target rate (connections / (delay + latency)).
                target = connections * 1000.0 / delay_ms
                delay_ms = max(1.0, delay_ms - w["mean_us"] / 1e3)
                write_lua(lua, messages, per_request, out, api_key, delay_ms, route, body_of)
                log_line = {"scenario": name, "calibration": {"warmup_rps": round(w["requests"] / (w["duration_us"] / 1e6), 1),
                            "warmup_mean_latency_ms": round(w["mean_us"] / 1e3, 1), "target_rps": round(target, 1),
                            "delay_ms": round(delay_ms, 1)}}
                print(json.dumps(log_line), file=sys.stderr, flush=True)
        before = status_counts(port, route) if acceltune else {}
        probes: list[Probe] = []
        if probe:  # several sequential clients: enough rejections for a p99 (one alone mostly waits on its accepted requests)
            probes = [Probe(port, json.dumps({"inputs": messages[i]}).encode(), api_key) for i in range(PROBES)]
            for pr in probes:
                pr.start()
        w = run_wrk(port, lua, connections, duration, threads, out)
        for pr in probes:
            pr.stop.set()
        for pr in probes:
            pr.join(15)
        after = status_counts(port, route) if acceltune else {}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    seconds = w["duration_us"] / 1e6
    if acceltune:  # by status, from the server's own counter (wrk only counts non-2xx)
        counts = {k: int(after.get(k, 0) - before.get(k, 0)) for k in sorted(set(after) | set(before))}
        counts = {k: v for k, v in counts.items() if v}
    else:
        counts = {"2xx": w["requests"] - w["non2xx"], "non2xx": w["non2xx"]}
    ok = w["requests"] - w["non2xx"]  # as wrk counted them (the server also finishes those cut off at the end)
    result = {
        "scenario": name, "messages_per_request": per_request, "connections": connections, "duration_s": round(seconds, 2),
        "requests_per_s": round(w["requests"] / seconds, 1), "ok_requests_per_s": round(ok / seconds, 1),
        "messages_per_s": round(ok * per_request / seconds, 1),
        "latency_ms": {"p50": w["p50_us"] / 1e3, "p95": w["p95_us"] / 1e3, "p99": w["p99_us"] / 1e3,
                       "max": w["max_us"] / 1e3},
        "status_counts": counts,
        "socket_errors": {k: w[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts") if w[k]},
    }
    if probes:
        samples = [x for pr in probes for x in pr.samples]
        rej = [s for st, s in samples if st in (429, 503)]
        acc = [s for st, s in samples if st == 200]
        result["probe"] = {
            "clients": len(probes), "samples": len(samples), "rejections": len(rej), "accepted": len(acc),
            "other": sorted({st for st, _ in samples if st not in (200, 429, 503)}),
            "rejection_latency_ms": {"p50": _ms(percentile(rej, 50)), "p99": _ms(percentile(rej, 99)), "max": _ms(max(rej, default=None))},
            "accepted_latency_ms": {"p50": _ms(percentile(acc, 50)), "p99": _ms(percentile(acc, 99))},
        }
    print(json.dumps(result), flush=True)
    return result


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1e3, 2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="the directory acceltune serve loads")
    p.add_argument("--baseline-model", help="transformers directory for the pipeline baseline")
    p.add_argument("--backend", default="auto")
    p.add_argument("--duration", type=float, default=15.0, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load first")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--overload-factor", type=float, default=4.0, help="overload: this many times the sustainable request rate")
    p.add_argument("--overload-connections", type=int, default=1024,
                   help="connections that share the paced overload (each waits connections/rate between its requests)")
    p.add_argument("--sustainable-rps", type=float, help="the sustainable rate for overload (default: the batching run's)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=2.0)
    p.add_argument("--max-queue", type=int, default=128,
                   help="for the 1-message and overload runs (about 150 ms of work at the measured rate)")
    p.add_argument("--max-queue-32", type=int, default=4096, help="for the 32-message runs (64 x 32 in flight)")
    p.add_argument("--scenarios", default="batching,nobatch,baseline,batching32,nobatch32,baseline32,overload,overload_closed")
    p.add_argument("--server-arg", action="append", default=[], help="extra `acceltune serve` argument (repeatable)")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    import resource  # the paced overload holds ~1,000 sockets in wrk and in the server (children inherit the limit)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else max(soft, 65536), hard))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    messages = load_messages()
    baseline_model = args.baseline_model
    if baseline_model is None:
        info = json.loads((Path(args.model) / "acceltune.json").read_text())
        baseline_model = (info.get("extra") or {}).get("source_model")
    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    results = {}
    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        workdir = Path(tmp)
        for name in wanted:
            port = free_port()
            per_request = 32 if name.endswith("32") else 1
            base = name.removesuffix("32")
            connections, delay_ms = args.connections, None
            if base == "overload_closed":
                connections = int(args.connections * args.overload_factor)
            elif base == "overload":  # paced: overload_factor x the sustainable request rate, offered by many connections
                sustainable = args.sustainable_rps or (results["batching"]["ok_requests_per_s"] if "batching" in results else None)
                if not sustainable:
                    raise SystemExit("overload needs the batching scenario first, or --sustainable-rps")
                connections = args.overload_connections
                delay_ms = connections * 1000.0 / (args.overload_factor * sustainable)
            if base == "baseline":
                if not baseline_model:
                    print(json.dumps({"scenario": name, "skipped": "no --baseline-model"}), flush=True)
                    continue
                cmd = [sys.executable, str(ROOT / "benchmarks" / "baseline_pipeline_server.py"), baseline_model,
                       "--port", str(port)]
            else:
                queue = args.max_queue_32 if per_request == 32 else args.max_queue
                cmd = [sys.executable, "-m", "acceltune", "serve", args.model, "--backend", args.backend,
                       "--port", str(port), "--max-batch-size", "1" if base == "nobatch" else str(args.max_batch_size),
                       "--max-wait-ms", str(args.max_wait_ms), "--max-queue", str(queue),
                       "--max-inputs", str(min(256, queue)), *args.server_arg]
            results[name] = scenario(name, cmd, port, messages, per_request, connections, args.duration, args.warmup,
                                     args.threads, None, base != "baseline", base.startswith("overload"), env, workdir,
                                     delay_ms)
            if delay_ms:
                results[name]["offered"] = {"sustainable_rps": sustainable, "target_rps": round(args.overload_factor * sustainable, 1),
                                            "nominal_delay_ms": round(delay_ms, 1),
                                            "achieved_vs_sustainable": round(results[name]["requests_per_s"] / sustainable, 2)}
                print(json.dumps({"scenario": name, "offered": results[name]["offered"]}), flush=True)
    summary = {"summary": True}

    def rate(name, key="requests_per_s"):
        return results[name][key] if name in results else None

    if "batching" in results:
        b = results["batching"]
        summary["batching_rps"] = b["ok_requests_per_s"]
        summary["batching_p99_ms"] = b["latency_ms"]["p99"]
        summary["target_600rps_p99_250ms_no5xx"] = (b["ok_requests_per_s"] >= 600 and b["latency_ms"]["p99"] <= 250
                                                    and not any(k.startswith("5") for k in b["status_counts"]))
    if "batching" in results and "nobatch" in results:
        summary["batching_vs_nobatch"] = round(rate("batching", "ok_requests_per_s") / rate("nobatch", "ok_requests_per_s"), 2)
        summary["target_1.7x"] = summary["batching_vs_nobatch"] >= 1.7
    if "batching" in results and "baseline" in results:
        summary["batching_vs_baseline"] = round(rate("batching", "ok_requests_per_s") / rate("baseline", "ok_requests_per_s"), 2)
    if "batching32" in results:
        summary["messages_per_s_32"] = results["batching32"]["messages_per_s"]
        summary["target_900msg_s"] = summary["messages_per_s_32"] >= 900
    if "overload" in results:
        o = results["overload"]
        other = [k for k in o["status_counts"] if k not in ("200", "429", "503")] + o["probe"]["other"]
        p99 = o["probe"]["rejection_latency_ms"]["p99"]
        summary["overload_status_counts"] = o["status_counts"]
        summary["overload_rejection_p99_ms"] = p99
        summary["overload_achieved_vs_sustainable"] = o["offered"]["achieved_vs_sustainable"]
        summary["target_overload"] = (not other and not o["socket_errors"] and p99 is not None and p99 <= 50
                                      and o["offered"]["achieved_vs_sustainable"] >= args.overload_factor * 0.95)
    if "overload_closed" in results:
        summary["overload_closed_rejection_p99_ms"] = results["overload_closed"]["probe"]["rejection_latency_ms"]["p99"]
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
