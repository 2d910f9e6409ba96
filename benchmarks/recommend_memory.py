"""Memory of `acceltune recommend train` on a large synthetic interaction log: peak RSS, by phase.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/recommend_memory.py [--interactions 10000000] [--users 100000]
        [--items 25000] [--max-steps 100] [--work-dir /tmp/acceltune-recmem] [--keep] [-- extra train flags]

1. Writes --interactions events (user_id,item_id,timestamp CSV, into --work-dir, never into the repository):
   --users users with the same number of events each, items drawn from a Zipf-like popularity over --items
   ids, each user's next item often the successor of the previous one (a sequential pattern), ids only (no
   items file: the memory of the data path and the model, not of a text encoder).
2. Trains on it with the CLI in a child process (`acceltune recommend train --interactions FILE --max-steps N`,
   the defaults otherwise: full softmax over every item, batch 128, validation on at most 10,000 users, test
   on every user, both baselines), sampling the child's anonymous RSS every 0.5 s (/proc/PID/status).
3. Prints ONE JSON line: the file's size and rows, the peak anonymous RSS overall and before the first optimizer
   step (reading, splitting, windows, tokenizing), ru_maxrss, wall time, time to the first step, train
   samples/s and the test metrics the run reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from big_data import dir_size, log, rss_mb  # noqa: E402  (the child's RSS from /proc, the same method)


def generate(path: Path, interactions: int, users: int, items: int, seed: int) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    per_user = interactions // users
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    popularity /= popularity.sum()
    chunk = max(1, 1_000_000 // per_user)  # users per write: about a million rows at a time
    with pacsv.CSVWriter(str(path), pa.schema([("user_id", pa.int64()), ("item_id", pa.int64()), ("timestamp", pa.int64())])) as w:
        for start in range(0, users, chunk):
            n = min(chunk, users - start)
            drawn = rng.choice(items, size=(n, per_user), p=popularity)
            follow = rng.random((n, per_user)) < 0.5  # half the time, the successor of the previous item
            for t in range(1, per_user):
                drawn[:, t] = np.where(follow[:, t], (drawn[:, t - 1] + 1) % items, drawn[:, t])
            user = np.repeat(np.arange(start, start + n), per_user)
            ts = np.tile(np.arange(per_user), n) + 1_600_000_000
            w.write_table(pa.table({"user_id": user, "item_id": drawn.ravel(), "timestamp": ts}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--interactions", type=int, default=10_000_000)
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=25_000)
    p.add_argument("--max-steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", default="/tmp/acceltune-recmem")
    p.add_argument("--keep", action="store_true", help="keep the generated file and the run")
    args, extra = p.parse_known_args()
    extra = [a for a in extra if a != "--"]
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    data = work / "events.csv"
    started = time.perf_counter()
    generate(data, args.interactions, args.users, args.items, args.seed)
    log(f"wrote {data} ({data.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - started:.1f}s")
    out_dir = work / "run"
    cmd = [sys.executable, "-m", "acceltune", "recommend", "train", "--interactions", str(data), "--output-dir", str(out_dir),
           "--max-steps", str(args.max_steps), "--log-every", "1", "--overwrite", *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(work / "hf-cache")}
    started, started_unix = time.perf_counter(), time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    timeline: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample():
        while not stop.wait(0.5):
            r = rss_mb(proc.pid)
            if r:
                timeline.append((time.perf_counter() - started, r[0]))

    threading.Thread(target=sample, daemon=True).start()
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    stop.set()
    if status != 0:
        sys.exit(f"training failed ({status}):\n{output[-3000:]}")
    records = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    first_step = next((r["time"] - started_unix for r in records if r.get("kind") == "train" and "time" in r), None)
    metrics = json.loads((out_dir / "metrics.json").read_text())
    before_first = [m for t, m in timeline if first_step is None or t <= first_step]
    result = {
        "interactions": args.interactions, "users": args.users, "items": args.items,
        "file_gb": round(data.stat().st_size / 1e9, 3), "max_steps": args.max_steps, "extra_flags": extra,
        "wall_s": round(wall, 1), "time_to_first_step_s": first_step and round(first_step, 1),
        "train_samples_per_s": metrics.get("train_samples_per_second"), "precision": metrics.get("precision"),
        "peak_rss_anon_mb": round(max((m for _, m in timeline), default=0.0), 1),
        "peak_rss_anon_before_first_step_mb": round(max(before_first, default=0.0), 1),
        "ru_maxrss_mb": round(usage.ru_maxrss / 1024, 1),
        "datasets_cache_mb": round(dir_size(work / "hf-cache") / 1e6, 1) if (work / "hf-cache").exists() else 0.0,
        "test": {k: metrics["test"].get(k) for k in ("users", "hr@10", "ndcg@10")} if "test" in metrics else None,
        "test_most_popular_ndcg@10": metrics.get("baselines", {}).get("most_popular", {}).get("ndcg@10"),
        "cpu_count": os.cpu_count(),
    }
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
