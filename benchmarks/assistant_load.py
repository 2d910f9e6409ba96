"""Load-test `acceltune assistant` against `acceltune serve` on the same export, with wrk (serve_load.py's method).

    python benchmarks/assistant_load.py --model INT8_DIR [--replies replies.yaml] [--duration 15] [--connections 64] [--repeats 2]

Both servers load INT8_DIR (an `acceltune export --format onnx --quantize int8` directory) with the same
batching flags; each scenario is a fresh server, loaded by wrk with one Banking77 test message per request
(serve: ``{"inputs": text}`` to /v1/classify; assistant: ``{"message", "conversation_id"}`` to /v1/reply,
1,000 conversations, every turn stored in a fresh SQLite database). The replies file defaults to one reply
per label of the model (any labels work). Scenarios alternate serve, assistant, serve, ... (``--repeats``
times each) so slow drifts of a shared machine hit both; the summary compares the medians. Prints one
JSON line per scenario, then the summary with the target (requests/s and p99 within 15% of serve).
At the defaults it runs about 2 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_load  # noqa: E402  (the server lifecycle, wrk and the server's own status counts)

TARGET = 0.15
CONVERSATIONS = 1000
ROUTES = {"serve": "/v1/classify", "assistant": "/v1/reply"}


def reply_bodies(messages: list[str], limit: int = 1000) -> list[str]:
    """/v1/reply bodies: one message each, in CONVERSATIONS conversations (round robin)."""
    return [json.dumps({"message": m, "conversation_id": f"bench-{i % CONVERSATIONS}"})
            for i, m in enumerate(messages[:limit])]


def replies_for(model: Path, path: Path) -> Path:
    """One reply per label of the model (a "$" in a label is escaped for string.Template)."""
    labels = json.loads((model / "acceltune.json").read_text())["labels"]
    intents = {label: f"You asked about {label.replace('$', '$$')}." for label in labels}
    path.write_text(json.dumps({"intents": intents}))  # JSON is YAML
    return path


def measure(name: str, cmd: list[str], port: int, route: str, bodies: list[str], args, env: dict, workdir: Path) -> dict:
    """One fresh server under wrk (serve_load's closed loop): requests/s, latency, statuses from its /metrics."""
    with serve_load.start_server(cmd, port, env=env, log_path=workdir / f"{name}.log") as srv:
        if args.warmup > 0:
            serve_load.run_wrk(srv.url, bodies, args.connections, args.warmup, threads=args.threads, path=route)
        before = serve_load.status_counts(srv.url, route)
        w = serve_load.run_wrk(srv.url, bodies, args.connections, args.duration, threads=args.threads, path=route)
        after = serve_load.status_counts(srv.url, route)
    counts = {k: int(after.get(k, 0) - before.get(k, 0)) for k in sorted(set(after) | set(before))}
    ok = w["requests"] - w["non2xx"]
    result = {"scenario": name, "route": route, "connections": args.connections, "duration_s": w["duration_s"],
              "requests_per_s": w["requests_per_s"], "ok_requests_per_s": round(ok / w["duration_s"], 1),
              "latency_ms": w["latency_ms"], "status_counts": {k: v for k, v in counts.items() if v},
              "socket_errors": {k: w[k] for k in serve_load.SOCKET_ERRORS if w[k]}}
    print(json.dumps(result), flush=True)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path, help="the export both servers load")
    p.add_argument("--replies", type=Path, help="replies file (default: one reply per label)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--duration", type=float, default=15.0, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load first")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2, help="runs of each server, alternating")
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=2.0)
    p.add_argument("--max-queue", type=int, help="both servers' --max-queue (default: the server's bounds)")
    p.add_argument("--assistant-arg", action="append", default=[], help="extra `acceltune assistant` argument (repeatable)")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    messages = serve_load.load_messages()
    bodies = {"serve": serve_load.message_bodies(messages), "assistant": reply_bodies(messages)}
    flags = ["--backend", args.backend, "--max-batch-size", str(args.max_batch_size), "--max-wait-ms", str(args.max_wait_ms),
             *(["--max-queue", str(args.max_queue), "--max-inputs", str(min(256, args.max_queue))] if args.max_queue else [])]
    runs: dict[str, list[dict]] = {"serve": [], "assistant": []}
    with tempfile.TemporaryDirectory(prefix="assistant_load_") as tmp:
        workdir = Path(tmp)
        replies = args.replies or replies_for(args.model, workdir / "replies.yaml")
        for i in range(args.repeats):
            for name in ("serve", "assistant"):
                port = serve_load.free_port()
                cmd = [sys.executable, "-m", "acceltune", name, str(args.model), "--port", str(port), *flags]
                if name == "assistant":  # every turn stored, in a fresh database per run
                    cmd += ["--replies", str(replies), "--db", f"sqlite:///{workdir / f'assistant-{i}.db'}", *args.assistant_arg]
                runs[name].append(measure(f"{name}-{i}", cmd, port, ROUTES[name], bodies[name], args, env, workdir))
    summary: dict = {"summary": True, "connections": args.connections, "repeats": args.repeats}
    for name, results in runs.items():
        summary[f"{name}_rps"] = round(statistics.median(r["ok_requests_per_s"] for r in results), 1)
        summary[f"{name}_p99_ms"] = round(statistics.median(r["latency_ms"]["p99"] for r in results), 1)
        summary[f"{name}_non200"] = sum(v for r in results for k, v in r["status_counts"].items() if k != "200")
    summary["rps_ratio"] = round(summary["assistant_rps"] / summary["serve_rps"], 3)
    summary["p99_ratio"] = round(summary["assistant_p99_ms"] / summary["serve_p99_ms"], 3)
    summary["target_within_15pct"] = (summary["rps_ratio"] >= 1 - TARGET and summary["p99_ratio"] <= 1 + TARGET
                                      and summary["assistant_non200"] == 0)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
