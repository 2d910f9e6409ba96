"""Training from a CSV larger than memory: bounded RSS, time to first step, throughput.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/big_data.py [--size-gb 3.5] [--max-steps 300] \
        [--tokenize auto|upfront|lazy] [--work-dir /tmp/acceltune-bigdata] [--keep] [--threads 2] \
        [-- extra acceltune train flags]

1. Generates --size-gb of Banking77-like messages (columns text,category) into --work-dir (never
   into the repository): every training message of Banking77 many times over, each copy varied
   (a prefix and/or suffix phrase from a small list, random casing of the first letter, a random
   amount or number of days substituted for digits), in shuffled blocks.
2. Trains from it with the CLI (`acceltune train --train BIG.csv --validation/--test
   banking77/test.csv --max-steps N --log-every 1 [--tokenize MODE]`) in a child process, with
   HF_DATASETS_CACHE inside --work-dir, sampling the child's anonymous and file-backed RSS every
   0.5 s (/proc/PID/status RssAnon, RssFile); ru_maxrss (os.wait4) is reported too but counts the
   memory-mapped Arrow pages, which are page cache the kernel drops under pressure, not memory the
   process holds.
3. Prints ONE JSON line: file size, rows, generation time, time to the end of the first optimizer
   step (the first training log record's time: loading, validation, indexing, up-front tokenization,
   the sampler's first epoch, the first batch's fetch and step), the tokenization mode the run used
   (`metrics.json`'s "tokenize"), the RSS timeline's peak per phase, training throughput,
   datasets-cache size on disk, peak RSS and its share of the file size.
4. Deletes the generated file and the cache (unless --keep).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "banking77"
PREFIXES = ["", "", "", "Hi, ", "Hello, ", "Hey there, ", "Quick question: ", "Please help: ", "Good morning. ",
            "Urgent: ", "Sorry to bother you, but ", "I need help. "]
SUFFIXES = ["", "", "", " Thanks!", " Thank you.", " Please advise.", " Any ideas?", " Cheers", " ASAP please.",
            " I'm on the app.", " This is the second time I ask."]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def variants(rows: list[tuple[str, str]], n: int, rng: random.Random) -> list[str]:
    """n CSV lines, each a varied copy of a random training message."""
    out = []
    for _ in range(n):
        text, cat = rows[rng.randrange(len(rows))]
        text = re.sub(r"\d+", lambda m: str(rng.randint(1, 999)), text) if any(c.isdigit() for c in text) else text
        if rng.random() < 0.2:
            text = text[:1].swapcase() + text[1:]
        text = rng.choice(PREFIXES) + text + rng.choice(SUFFIXES)
        text = text.replace('"', '""')
        out.append(f'"{text}",{cat}\n')
    return out


def generate(path: Path, size_gb: float, seed: int) -> tuple[int, float]:
    with open(DATA / "train.csv", newline="", encoding="utf-8") as f:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(f)]
    rng = random.Random(seed)
    pool = variants(rows, 200_000, rng)  # varied lines, written in freshly shuffled blocks
    target = int(size_gb * 2**30)
    t = time.perf_counter()
    n = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("text,category\n")
        written = 0
        while written < target:
            rng.shuffle(pool)
            if n:  # refresh a tenth of the pool so blocks differ
                pool[: len(pool) // 10] = variants(rows, len(pool) // 10, rng)
            block = "".join(pool)
            f.write(block)
            written += len(block.encode("utf-8"))
            n += len(pool)
    return n, time.perf_counter() - t


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def rss_mb(pid: int) -> tuple[float, float] | None:
    """(anonymous, file-backed) resident MB: file-backed pages are the memory-mapped Arrow files, page
    cache the kernel reclaims under pressure; anonymous memory is what the process really holds."""
    try:
        with open(f"/proc/{pid}/status") as f:
            vals = {l.split(":")[0]: int(l.split()[1]) / 1024 for l in f if l.startswith(("RssAnon:", "RssFile:"))}
        return vals["RssAnon"], vals["RssFile"]
    except (OSError, KeyError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gb", type=float, default=3.5)
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--tokenize", choices=("auto", "upfront", "lazy"), default=None,
                    help="acceltune train --tokenize (default: acceltune's own, auto)")
    ap.add_argument("--work-dir", default="/tmp/acceltune-bigdata")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the generated file and cache")
    ap.add_argument("--reuse", action="store_true", help="reuse an existing generated file of the same size")
    ap.add_argument("extra", nargs="*", help="extra `acceltune train` flags (after --)")
    args = ap.parse_args()
    if any(a.startswith("--log-every") for a in args.extra):
        ap.error("--log-every is fixed at 1: the first log record times the first step")
    work = Path(args.work_dir)
    if work.resolve().is_relative_to(ROOT.resolve()):
        raise SystemExit("--work-dir must be outside the repository")
    work.mkdir(parents=True, exist_ok=True)
    big = work / f"banking77_big_{args.size_gb:g}gb.csv"
    cache = work / "hf-cache"
    out_dir = work / "run"
    result: dict = {"size_gb_requested": args.size_gb, "max_steps": args.max_steps}
    try:
        if args.reuse and big.is_file():
            log(f"reusing {big}")
            with open(big, "rb") as f:
                rows = sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 24), b"")) - 1
            gen_s = 0.0
        else:
            log(f"generating {args.size_gb} GB into {big} ...")
            rows, gen_s = generate(big, args.size_gb, args.seed)
        size = big.stat().st_size
        result.update(file=str(big), file_gb=round(size / 2**30, 2), rows=rows, generate_s=round(gen_s, 1))
        log(f"{size / 2**30:.2f} GB, {rows} rows, {gen_s:.0f}s")

        threads = args.threads or len(os.sched_getaffinity(0))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(cache), "TOKENIZERS_PARALLELISM": "true",
               "OMP_NUM_THREADS": str(threads)}
        cmd = [sys.executable, "-m", "acceltune", "train", "--train", str(big), "--validation", str(DATA / "test.csv"),
               "--test", str(DATA / "test.csv"), "--max-steps", str(args.max_steps), "--log-every", "1",
               "--output-dir", str(out_dir), "--overwrite", *(["--tokenize", args.tokenize] if args.tokenize else []),
               *args.extra]
        log(" ".join(cmd))
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        timeline: list[tuple[float, float]] = []
        done = threading.Event()

        def sample():
            while not done.is_set():
                r = rss_mb(proc.pid)
                if r is not None:
                    timeline.append((time.perf_counter() - t0, *r))
                done.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        err_tail: list[str] = []

        def drain():
            for line in proc.stderr:
                err_tail.append(line)
                del err_tail[:-200]

        drainer = threading.Thread(target=drain, daemon=True)
        drainer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        drainer.join(5)
        rc = os.waitstatus_to_exitcode(status)
        if rc != 0:
            log("".join(err_tail[-60:]))
            raise SystemExit(f"acceltune train failed (exit {rc})")

        records = [json.loads(l) for l in open(out_dir / "log.jsonl")]
        train_recs = [r for r in records if r.get("kind") == "train"]
        metrics = json.loads((out_dir / "metrics.json").read_text())
        start_epoch = time.time() - (time.perf_counter() - t0)  # wall clock at t0
        first = train_recs[0]
        # Logged when step 1 has finished (--log-every 1): everything before training plus the first
        # batch (its tokenization, when lazy) and step, not only the time before the loop starts.
        first_step_s = first["time"] - start_epoch
        loading = [a for t, a, _ in timeline if t <= first_step_s]
        training = [a for t, a, _ in timeline if t > first_step_s]
        result.update(
            exit_code=rc, wall_s=round(wall, 1), cpu_s=round(usage.ru_utime + usage.ru_stime, 1),
            time_to_first_step_s=round(first_step_s, 1), tokenize=metrics.get("tokenize"),
            train_samples_per_s=metrics["train_samples_per_second"], precision=metrics["precision"],
            train_examples=metrics["train_examples"], max_length=metrics["max_length"],
            test_accuracy=round(metrics["test"]["accuracy"], 4),
            peak_rss_mb=round(usage.ru_maxrss / 1024, 1),  # includes file-backed (mmap) pages
            peak_anon_rss_mb=round(max(a for _, a, _ in timeline), 1),
            peak_anon_rss_share_of_file=round(max(a for _, a, _ in timeline) * 2**20 / size, 4),
            peak_anon_rss_loading_mb=round(max(loading), 1) if loading else None,
            peak_anon_rss_training_mb=round(max(training), 1) if training else None,
            peak_file_rss_mb=round(max(f for _, _, f in timeline), 1),
            datasets_cache_gb=round(dir_size(cache) / 2**30, 2),
            rss_timeline_s_anon_file_mb=[(round(t), round(a), round(f)) for t, a, f in timeline[:: max(1, len(timeline) // 40)]],
        )
    finally:
        if not args.keep:
            for p in (big, cache, out_dir):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                elif p.exists():
                    p.unlink()
            log(f"removed {big}, {cache} and {out_dir}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
