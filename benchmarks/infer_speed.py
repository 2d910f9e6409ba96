"""Inference speed on the CPU: transformers pipeline vs acceltune's torch, onnx fp32 and onnx int8 backends.

    .venv/bin/python benchmarks/infer_speed.py --model-dir runs/banking77 \
        --data ../shared/data/banking77/test.csv [--limit N] [--threads N] [--whole-process]

Exports the model (fp32 and int8, via acceltune.export) into --work-dir, then measures each
backend in a fresh subprocess (so peak RSS is per backend): sequences/s over the whole test set
(after a warm-up), batch-1 p50/p99 latency for a typical ~16-token message (tokenization
included), accuracy against the 'category' (or 'label') column, model size on disk, peak RSS.
Prints one JSON line on stdout; progress goes to stderr.

--whole-process also times `acceltune predict` (onnx exports) and a transformers-pipeline script
(read CSV, classify at batch 32, write JSONL) as whole processes, on the test texts repeated to
--whole-process-texts and on 10 texts: the marginal rate (extra texts / extra seconds) leaves out
start-up and model loading, and is set against the in-process rate of the same backend. It also
reports backend_share: the part of `acceltune predict`'s marginal wall time spent inside ONNX Runtime's
session.run (the command run in-process, twice per input size), which load from elsewhere on the
machine barely moves, unlike the two rates.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("pipeline", "torch", "onnx_fp32", "onnx_int8")
LATENCY_TOKENS = 16


def read_data(path: str, limit: int | None) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    col = "category" if "category" in rows[0] else "label"
    rows = rows[:limit] if limit else rows
    return [r["text"] for r in rows], [r.get(col, "") for r in rows]


def dir_size_mb(d: Path, names: list[str] | None = None) -> float:
    files = [d / n for n in names] if names else [p for p in d.rglob("*") if p.is_file()]
    return round(sum(p.stat().st_size for p in files) / 2**20, 1)


def typical_message(tokenizer, texts: list[str], n_tokens: int = LATENCY_TOKENS) -> str:
    """The first test text that tokenizes to exactly n_tokens (special tokens included), else the closest."""
    lengths = [len(ids) for ids in tokenizer(texts[:2000])["input_ids"]]
    best = min(range(len(lengths)), key=lambda i: (abs(lengths[i] - n_tokens), i))
    return texts[best]


def percentile_ms(samples: list[float], q: float) -> float:
    import numpy as np

    return round(float(np.percentile(samples, q)) * 1e3, 3)


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec from the parent."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------ worker


def worker(args) -> dict:
    import numpy as np

    threads = args.threads
    texts, gold = read_data(args.data, args.limit)
    message = args.message
    if args.backend == "pipeline":
        import torch
        from transformers import pipeline

        torch.set_num_threads(threads)
        pipe = pipeline("text-classification", model=args.model_dir, batch_size=32, device=-1)

        def predict_all(xs):
            return [r["label"] for r in pipe(xs, batch_size=32, truncation=True)]

        def predict_one(x):
            return pipe(x, truncation=True)

        size_dir = Path(args.model_dir)
        size_files = [p.name for p in size_dir.iterdir() if p.suffix in (".safetensors", ".bin")]
    else:
        from acceltune.inference.predictor import Predictor

        if args.backend == "torch":
            import torch

            torch.set_num_threads(threads)
            size_dir = Path(args.model_dir)
            pred = Predictor(size_dir, backend="torch", device="cpu")
            size_files = [p.name for p in size_dir.iterdir() if p.suffix in (".safetensors", ".bin")]
        else:
            size_dir = Path(args.work_dir) / args.backend
            pred = Predictor(size_dir, backend="onnx", device="cpu", threads=threads)
            size_files = [pred.info.extra["file"]]
        labels = pred.labels

        def predict_all(xs):
            logits, _ = pred.logits(xs)
            return [labels[i] for i in logits.argmax(1)]

        def predict_one(x):
            return pred.predict([x])

    predict_all(texts[:64])  # warm-up: thread pools, allocator, first-shape kernels
    start = time.perf_counter()
    predicted = predict_all(texts)
    seconds = time.perf_counter() - start
    for _ in range(30):
        predict_one(message)
    lat = []
    deadline = time.perf_counter() + args.latency_seconds
    while len(lat) < 1000 and (time.perf_counter() < deadline or len(lat) < 100):
        t0 = time.perf_counter()
        predict_one(message)
        lat.append(time.perf_counter() - t0)
    rss_mb = peak_rss_mb()
    return {
        "sequences_per_s": round(len(texts) / seconds, 1),
        "seconds": round(seconds, 3),
        "latency_ms_p50": percentile_ms(lat, 50),
        "latency_ms_p99": percentile_ms(lat, 99),
        "latency_samples": len(lat),
        "accuracy": round(float(np.mean([p == g for p, g in zip(predicted, gold)])), 4),
        "model_size_mb": dir_size_mb(size_dir, size_files),
        "peak_rss_mb": round(rss_mb, 1),
        "predictions": predicted,
    }


# ------------------------------------------------------------------------------------------ parent


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def cpu_features() -> list[str]:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16") if f in flags]
    except OSError:
        pass
    return []


def ensure_exports(model_dir: Path, work_dir: Path, data: str, reuse: bool, int8_min_agreement: float | None) -> dict:
    from acceltune.export import export_model

    out = {}
    for name, q in (("onnx_fp32", None), ("onnx_int8", "int8")):
        target = work_dir / name
        if reuse and (target / "acceltune.json").is_file():
            info = json.loads((target / "acceltune.json").read_text())
            out[name] = {"reused": True, "parity": info.get("extra", {}).get("parity")}
            continue
        t = time.perf_counter()
        kw = {"min_agreement": int8_min_agreement} if int8_min_agreement is not None and q else {}
        r = export_model(model_dir, target, quantize=q, overwrite=True, parity_data=data,
                         log=lambda m: print(f"  [{name}] {m}", file=sys.stderr, flush=True), **kw)
        out[name] = {"export_s": round(time.perf_counter() - t, 1), "parity": r.parity}
    return out


PIPELINE_SCRIPT = """
import csv, json, sys
from transformers import pipeline
texts = [r["text"] for r in csv.DictReader(open(sys.argv[2], newline="", encoding="utf-8"))]
pipe = pipeline("text-classification", model=sys.argv[1], batch_size=32, device=-1, top_k=3)
with open(sys.argv[3], "w", encoding="utf-8") as f:
    for r in pipe(texts, batch_size=32, truncation=True):
        f.write(json.dumps({"label": r[0]["label"], "score": r[0]["score"], "top_k": r}, ensure_ascii=False) + "\\n")
"""


def in_process_rate(args) -> float:
    """Messages/s of Predictor.logits on --data's texts, after a warm-up: the rate a whole process is set against."""
    from acceltune.inference.predictor import Predictor

    texts, _ = read_data(args.data, None)
    pred = Predictor(Path(args.work_dir) / args.in_process_rate, backend="onnx", device="cpu", threads=args.threads)
    pred.logits(texts[:64])
    t = time.perf_counter()
    pred.logits(texts)
    return len(texts) / (time.perf_counter() - t)


def backend_share(work: Path, backend: str) -> dict:
    """`acceltune predict` on the small and the big input, in this process, timing ONNX Runtime's part."""
    import acceltune.inference.backends.onnx_backend as onnx_backend
    from acceltune.cli import main as cli

    spent = [0.0]
    real = onnx_backend.run_session

    def timed(*a):
        t = time.perf_counter()
        try:
            return real(*a)
        finally:
            spent[0] += time.perf_counter() - t

    onnx_backend.run_session = timed
    runs: dict[str, list[tuple[float, float]]] = {}
    for name in ("small", "big", "small", "big"):
        spent[0] = 0.0
        t = time.perf_counter()
        cli(["predict", str(work / backend), "--input", str(work / f"whole_process_{name}.csv"),
             "--output", str(work / "backend_share.jsonl"), "--overwrite"])
        runs.setdefault(name, []).append((time.perf_counter() - t, spent[0]))
    (wall_s, ort_s), (wall_b, ort_b) = min(runs["small"]), min(runs["big"])
    return {"wall_s_small": round(wall_s, 2), "wall_s_big": round(wall_b, 2), "backend_s_big": round(ort_b, 2),
            "backend_share": round((ort_b - ort_s) / (wall_b - wall_s), 3)}


def whole_process(args, model_dir: Path, texts: list[str], backends: list[str], results: dict, env: dict) -> dict:
    """Marginal messages/s of whole processes: (big - small texts) / (big - small seconds), fastest of the repeats."""
    work = Path(args.work_dir)
    inputs = {}
    for name, n in (("small", 10), ("big", args.whole_process_texts)):
        path = work / f"whole_process_{name}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text"])
            w.writerows([texts[i % len(texts)]] for i in range(n))
        inputs[name] = (path, n)
    cli = [sys.executable, "-m", "acceltune", "predict"]
    commands = {b: lambda inp, out, b=b: cli + [str(work / b), "--input", str(inp), "--output", str(out), "--overwrite"]
                for b in backends if b.startswith("onnx")}
    if "pipeline" in backends:
        commands["pipeline"] = lambda inp, out: [sys.executable, "-c", PIPELINE_SCRIPT, str(model_dir), str(inp), str(out)]
    penv = {**env, "ACCELTUNE_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads)}

    def timed(command: list[str]) -> tuple[float, str]:
        t = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, env=penv)
        if proc.returncode != 0:
            raise SystemExit(f"{command[:4]} failed: {proc.stderr.strip()[-2000:]}")
        return time.perf_counter() - t, proc.stdout

    out = {}
    for b, command in commands.items():
        seconds: dict[str, list[float]] = {"small": [], "big": []}
        in_process: list[float] = []
        # Interleaved with the in-process rate on the same big input, so that load from elsewhere on the
        # machine hits both alike; the fastest of the repeats counts for each.
        for _ in range(args.whole_process_repeats):
            if b != "pipeline":
                _, stdout = timed([sys.executable, __file__, "--model-dir", str(model_dir), "--work-dir", str(work),
                                   "--threads", str(args.threads), "--in-process-rate", b, "--data", str(inputs["big"][0])])
                in_process.append(float(stdout.strip().splitlines()[-1]))
            for name, (path, n) in inputs.items():
                seconds[name].append(timed(command(path, work / f"whole_process_{b}.jsonl"))[0])
        best = {k: min(v) for k, v in seconds.items()}
        extra = inputs["big"][1] - inputs["small"][1]
        rate = extra / max(best["big"] - best["small"], 1e-9)
        r = {"seconds_small": round(best["small"], 2), "seconds_big": round(best["big"], 2),
             "marginal_messages_per_s": round(rate, 1)}
        if in_process:
            r["in_process_messages_per_s"] = round(max(in_process), 1)
            r["of_in_process_rate"] = round(rate / max(in_process), 3)
            _, stdout = timed([sys.executable, __file__, "--model-dir", str(model_dir), "--work-dir", str(work),
                               "--backend-share", b])
            r.update(json.loads(stdout.strip().splitlines()[-1]))
        out[b] = r
        print(f"  whole process {b}: {r}", file=sys.stderr, flush=True)
    if "pipeline" in out:
        for b, r in out.items():
            r["speedup_vs_pipeline"] = round(r["marginal_messages_per_s"] / out["pipeline"]["marginal_messages_per_s"], 2)
    return {"texts_big": inputs["big"][1], "texts_small": inputs["small"][1], "results": out}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", required=True, help="fine-tuned acceltune model directory (transformers format)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "banking77" / "test.csv"),
                    help="CSV with text and category (or label) columns")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N texts")
    ap.add_argument("--threads", type=int, default=None, help="threads per backend (default: usable cores)")
    ap.add_argument("--work-dir", default=None, help="where the exports go (default: <model-dir>_bench_exports)")
    ap.add_argument("--reuse-exports", action="store_true", help="reuse exports already in --work-dir")
    ap.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated subset of {','.join(BACKENDS)}")
    ap.add_argument("--int8-min-agreement", type=float, default=None,
                    help="relax the int8 export's label-agreement check (default: the CLI's 0.99); for probe/random models")
    ap.add_argument("--latency-seconds", type=float, default=5.0, help="time spent on batch-1 latency per backend")
    ap.add_argument("--whole-process", action="store_true", help="also time `acceltune predict` and a pipeline script as whole processes")
    ap.add_argument("--whole-process-texts", type=int, default=15400, help="texts in the large whole-process input")
    ap.add_argument("--whole-process-repeats", type=int, default=2, help="runs per input (the fastest counts)")
    # internal: one backend in this (fresh) process
    ap.add_argument("--worker", dest="backend", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--message", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--in-process-rate", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--backend-share", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args.threads = args.threads or len(os.sched_getaffinity(0))
    model_dir = Path(args.model_dir).resolve()
    args.work_dir = str(Path(args.work_dir or f"{model_dir}_bench_exports").resolve())

    if args.backend:
        print(json.dumps(worker(args)))
        return 0
    if args.in_process_rate:
        print(in_process_rate(args))
        return 0
    if args.backend_share:
        print(json.dumps(backend_share(Path(args.work_dir), args.backend_share)))
        return 0

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        ap.error(f"unknown backends {sorted(unknown)}")
    texts, _ = read_data(args.data, args.limit)
    from transformers import AutoTokenizer

    message = typical_message(AutoTokenizer.from_pretrained(model_dir), texts)
    print(f"exporting {model_dir} -> {args.work_dir}", file=sys.stderr, flush=True)
    exports = ensure_exports(model_dir, Path(args.work_dir), args.data, args.reuse_exports, args.int8_min_agreement)

    results = {}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    for b in backends:
        cmd = [sys.executable, __file__, "--model-dir", str(model_dir), "--data", args.data, "--threads", str(args.threads),
               "--work-dir", args.work_dir, "--worker", b, "--message", message, "--latency-seconds", str(args.latency_seconds)]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        print(f"measuring {b} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            results[b] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
            continue
        results[b] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[b]
        print(f"  {b}: {r['sequences_per_s']} seq/s, p50 {r['latency_ms_p50']} ms, p99 {r['latency_ms_p99']} ms, "
              f"accuracy {r['accuracy']}, {r['model_size_mb']} MB, RSS {r['peak_rss_mb']} MB", file=sys.stderr, flush=True)

    whole = whole_process(args, model_dir, texts, backends, results, env) if args.whole_process else None
    preds = {b: r.pop("predictions") for b, r in results.items() if "predictions" in r}
    base = results.get("pipeline", {}).get("sequences_per_s")
    for b, r in results.items():
        if base and "sequences_per_s" in r:
            r["speedup_vs_pipeline"] = round(r["sequences_per_s"] / base, 2)
        if "torch" in preds and b in preds and b != "torch":
            r["agreement_with_torch"] = round(sum(x == y for x, y in zip(preds[b], preds["torch"])) / len(preds[b]), 4)
    from transformers import AutoTokenizer as _T

    report = {
        "benchmark": "infer_speed",
        "model_dir": str(model_dir),
        "data": args.data,
        "texts": len(texts),
        "threads": args.threads,
        "latency_message": {"text": message, "tokens": len(_T.from_pretrained(model_dir)(message)["input_ids"])},
        "machine": {"cpu": cpu_model(), "usable_cores": len(os.sched_getaffinity(0)), "features": cpu_features(),
                    "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "exports": exports,
        "int8_min_agreement": args.int8_min_agreement if args.int8_min_agreement is not None else 0.99,
        "results": results,
        **({"whole_process": whole} if whole else {}),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
