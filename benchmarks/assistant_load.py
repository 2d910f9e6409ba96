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
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_load  # noqa: E402  (the load generator, the server lifecycle and the result format)

TARGET = 0.15
CONVERSATIONS = 1000


_bodies = itertools.count()


def reply_body(chunk: list[str]) -> dict:
    """/v1/reply's body: the message, in one of CONVERSATIONS conversations (round robin)."""
    return {"message": chunk[0], "conversation_id": f"bench-{next(_bodies) % CONVERSATIONS}"}


def replies_for(model: Path, path: Path) -> Path:
    """One reply per label of the model (a "$" in a label is escaped for string.Template)."""
    labels = json.loads((model / "acceltune.json").read_text())["labels"]
    intents = {label: f"You asked about {label.replace('$', '$$')}." for label in labels}
    path.write_text(json.dumps({"intents": intents}))  # JSON is YAML
    return path


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
    p.add_argument("--max-queue", type=int, default=128)
    args = p.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    messages = serve_load.load_messages()
    flags = ["--backend", args.backend, "--max-batch-size", str(args.max_batch_size), "--max-wait-ms", str(args.max_wait_ms),
             "--max-queue", str(args.max_queue), "--max-inputs", str(min(256, args.max_queue))]
    runs: dict[str, list[dict]] = {"serve": [], "assistant": []}
    with tempfile.TemporaryDirectory(prefix="assistant_load_") as tmp:
        workdir = Path(tmp)
        replies = args.replies or replies_for(args.model, workdir / "replies.yaml")
        for i in range(args.repeats):
            for name in ("serve", "assistant"):
                port = serve_load.free_port()
                if name == "serve":
                    cmd = [sys.executable, "-m", "acceltune", "serve", str(args.model), "--port", str(port), *flags]
                    route, body_of = "/v1/classify", serve_load.classify_body
                else:
                    db = f"sqlite:///{workdir / f'assistant-{i}.db'}"
                    cmd = [sys.executable, "-m", "acceltune", "assistant", str(args.model), "--replies", str(replies),
                           "--db", db, "--port", str(port), *flags]
                    route, body_of = "/v1/reply", reply_body
                result = serve_load.scenario(f"{name}-{i}", cmd, port, messages, 1, args.connections, args.duration,
                                             args.warmup, args.threads, None, True, False, env, workdir,
                                             route=route, body_of=body_of)
                runs[name].append(result)
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
