"""Training throughput, side by side: the Hugging Face Trainer (defaults, best-configured) vs acceltune.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train_speed.py \
        [--train ../shared/data/banking77/train.csv] [--test ../shared/data/banking77/test.csv] \
        [--subset 3000] [--epochs 1] [--repeats 1] [--threads 2] \
        [--sides trainer_default,trainer_best,acceltune] [--set acceltune_field=value ...]

Every side fine-tunes the same model (the packaged all-MiniLM-L6-v2 unless --model) on the same
seeded subset of --train, with the same batch size, body learning rate, epochs, seed and threads,
each in its own fresh subprocess (peak RSS is per side: the child's ru_maxrss), alternating sides
within each repeat so drifting machine load hits all of them alike. Then each side predicts
--test and reports accuracy.

  trainer_default  transformers.Trainer, DataCollatorWithPadding, random batches, fp32
  trainer_best     the same plus group_by_length=True and bf16=True where the CPU (AVX-512 BF16 /
                   AMX) or GPU (compute capability >= 8) supports it
  acceltune        acceltune.train(TrainConfig) with its defaults (length-grouped batches,
                   frozen word embeddings, head learning rate 10x the body's, precision auto)

Hyper-parameters shared by all sides: batch 32, learning rate 1e-4 for every parameter (acceltune's
head too: its product default is 10x the body's, --acceltune-head-lr keeps that; at 1 epoch it costs
~5 points of accuracy here), linear decay, fused AdamW, grad clipping 1.0. Differences that are the
products' own defaults are kept (label smoothing is not: 0 on all sides, acceltune's default 0.1
via --set label_smoothing=0.1): acceltune warms up for 6% of the steps and uses weight decay
0.01 (Trainer: 0 and 0.0); acceltune truncates at the 99th-percentile length (48 tokens here),
the Trainer at the tokenizer's 512.

Train samples/s is each product's own figure: the Trainer's metrics["train_samples_per_second"]
(its whole train() call), acceltune's metrics["train_samples_per_second"] (its training loop,
evaluation and checkpoint writing paused out; no validation runs here). Wall seconds per side
(model load, tokenization, training, test prediction) are reported too.

MFU (model FLOPs utilisation) counts real (non-padding) tokens only: per sequence of L tokens,
6 * P * L + 12 * layers * hidden * L^2 FLOPs (P: encoder-layer parameters; the second term is
attention scores and mixing), summed over an epoch's sequences, times epochs, divided by training
seconds, divided by this machine's matmul peak for the precision the side used. The peak is
measured first (in its own subprocess, same threads) on the model's own GEMMs: for a batch of
tokens x 384, the forward, input-gradient and weight-gradient products of the 384x384 (q, k, v,
o), 384x1536 and 1536x384 linears, in the proportions one encoder layer has.

Prints ONE JSON line on stdout; progress goes to stderr. Runs unchanged on CUDA (bf16 on
Ampere/Hopper): pass --device cuda or leave auto.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "banking77"
SIDES = ("trainer_default", "trainer_best", "acceltune")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------- helpers


def setup_threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def cpu_bf16() -> bool:
    try:
        flags = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split()
    except (OSError, StopIteration):
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def device_of(requested: str):
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def bf16_supported(device: str) -> bool:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_capability()[0] >= 8
    return cpu_bf16()


def cpu_model() -> str:
    try:
        return next(l for l in open("/proc/cpuinfo") if l.startswith("model name")).split(":", 1)[1].strip()
    except (OSError, StopIteration):
        import platform

        return platform.processor() or "unknown"


def model_path(name: str) -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from acceltune.modeling import resolve_model

    return resolve_model(name)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def read_rows(path: str) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def label_column(rows: list[dict]) -> str:
    return "category" if "category" in rows[0] else "label"


def make_subset(train: str, n: int, seed: int, out: Path) -> Path:
    rows = read_rows(train)
    if n and n < len(rows):
        rows = random.Random(seed).sample(rows, n)
    col = label_column(rows)
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "category"])
        for r in rows:
            w.writerow([r["text"], r[col]])
    return out


def flops_per_sequence(model_config, param_count: int, length: int) -> float:
    return 6.0 * param_count * length + 12.0 * model_config.num_hidden_layers * model_config.hidden_size * length * length


def encoder_params(config) -> int:
    """Parameters of the encoder layers (BERT layout: q, k, v, o, intermediate, output, two LayerNorms)."""
    h, ff = config.hidden_size, config.intermediate_size
    return config.num_hidden_layers * (4 * h * h + 2 * h * ff + 9 * h + ff)


# ------------------------------------------------------------------------------------- peak worker


def peak_worker(args) -> dict:
    """GFLOP/s of the model's own GEMMs (fwd, grad-input, grad-weight) per precision."""
    import torch

    setup_threads(args.threads)
    device = device_of(args.device)
    tokens = args.peak_tokens
    h, ff = 384, 1536
    # one encoder layer: q, k, v, o (h x h), intermediate (h -> ff), output (ff -> h)
    shapes = [(h, h)] * 4 + [(h, ff), (ff, h)]
    out = {"tokens": tokens}
    dtypes = [("fp32", torch.float32)] + ([("bf16", torch.bfloat16)] if bf16_supported(device) else [])
    for name, dt in dtypes:
        mats = []
        for k, n in shapes:
            x = torch.randn(tokens, k, dtype=dt, device=device)
            w = torch.randn(n, k, dtype=dt, device=device)  # nn.Linear layout (out, in)
            dy = torch.randn(tokens, n, dtype=dt, device=device)
            mats.append((x, w, dy))

        def layer():
            for x, w, dy in mats:
                torch.nn.functional.linear(x, w)  # forward  y = x w^T
                dy @ w                            # grad input
                dy.t() @ x                        # grad weight
        flops = sum(3 * 2 * tokens * k * n for k, n in shapes)
        for _ in range(5):
            layer()
        sync(device)
        best = 0.0
        for _ in range(args.peak_rounds):
            it = 20
            t = time.perf_counter()
            for _ in range(it):
                layer()
            sync(device)
            best = max(best, flops * it / (time.perf_counter() - t) / 1e9)
        out[name] = round(best, 1)
    return out


# ---------------------------------------------------------------------------------- trainer worker


class CountingCollator:
    """Wraps DataCollatorWithPadding: counts real and padded token slots of the training batches."""

    def __init__(self, inner):
        self.inner = inner
        self.real = 0
        self.slots = 0

    def __call__(self, features):
        batch = self.inner(features)
        m = batch["attention_mask"]
        self.real += int(m.sum())
        self.slots += m.numel()
        return batch


def trainer_worker(args, best: bool) -> dict:
    import numpy as np
    from datasets import Dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)
    from transformers.utils import logging as hf_logging

    setup_threads(args.threads)
    hf_logging.set_verbosity_error()
    device = device_of(args.device)
    t0 = time.perf_counter()
    train_rows, test_rows = read_rows(args.subset_csv), read_rows(args.test)
    labels = sorted({r["category"] for r in train_rows})
    lid = {l: i for i, l in enumerate(labels)}
    path = model_path(args.model)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=lid, ignore_mismatched_sizes=True)

    def ds(rows):
        d = Dataset.from_dict({"text": [r["text"] for r in rows], "label": [lid[r[label_column(rows)]] for r in rows]})
        return d.map(lambda b: tok(b["text"], truncation=True), batched=True, remove_columns=["text"])

    train_ds, test_ds = ds(train_rows), ds(test_rows)
    use_bf16 = best and bf16_supported(device)
    import dataclasses

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "train_sampling_strategy" in names:  # transformers >= 5
        grouping = {"train_sampling_strategy": "group_by_length" if best else "random"}
    else:
        grouping = {"group_by_length": best}
    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="hf-trainer-"), per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr, num_train_epochs=args.epochs, seed=args.seed, save_strategy="no",
        eval_strategy="no", report_to=[], logging_strategy="no", disable_tqdm=True,
        bf16=use_bf16, **grouping, use_cpu=device == "cpu", per_device_eval_batch_size=args.batch_size)
    collator = CountingCollator(DataCollatorWithPadding(tok))
    trainer = Trainer(model=model, args=targs, train_dataset=train_ds, data_collator=collator)
    out = trainer.train()
    train_s = out.metrics["train_runtime"]
    real, slots = collator.real, collator.slots
    trainer.data_collator = DataCollatorWithPadding(tok)
    pred = trainer.predict(test_ds)
    acc = float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())
    lengths = np.array([len(x) for x in train_ds["input_ids"]])
    return {
        "train_samples_per_s": round(out.metrics["train_samples_per_second"], 2),
        "train_seconds": round(train_s, 2),
        "test_accuracy": round(acc, 4),
        "precision": "bf16" if use_bf16 else "fp32",
        "padded_token_share": round(1 - real / max(slots, 1), 4),
        "real_tokens": real,
        "flops": args.epochs * sum(flops_per_sequence(model.config, encoder_params(model.config), int(L)) for L in lengths),
        "wall_s": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": peak_rss_mb(),
    }


# -------------------------------------------------------------------------------- acceltune worker


def parse_value(v: str):
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def acceltune_worker(args) -> dict:
    import numpy as np

    sys.path.insert(0, str(ROOT / "src"))
    setup_threads(args.threads)
    from acceltune import batching
    from acceltune.config import TrainConfig
    from acceltune.modeling import load_tokenizer
    from acceltune.training.loop import train

    t0 = time.perf_counter()
    flat = dict(train=args.subset_csv, test=args.test, validation_fraction=0.0, model=args.model, epochs=args.epochs,
                batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed, device=args.device,
                output_dir=tempfile.mkdtemp(prefix="acceltune-bench-"), overwrite=True, log_every=1_000_000)
    if not args.acceltune_head_lr:  # same hyper-parameters as the Trainer: one learning rate everywhere
        flat["head_learning_rate"] = args.lr
    flat["label_smoothing"] = 0.0  # the Trainer's (acceltune's default is 0.1): --set label_smoothing=0.1
    for item in args.set or []:
        k, v = item.split("=", 1)
        flat[k.replace("-", "_")] = parse_value(v)
    cfg = TrainConfig.from_flat(flat)
    res = train(cfg, quiet=True)
    m = res.metrics
    rss = peak_rss_mb()

    # Real and padded token slots of the epochs just trained: the sampler is deterministic (seed, epoch).
    from transformers import AutoConfig

    tok = load_tokenizer(model_path(args.model))
    texts = [r["text"] for r in read_rows(args.subset_csv)]
    lengths = np.array([len(x) for x in tok(texts, truncation=True, max_length=m["max_length"])["input_ids"]])
    sampler = batching.LengthGroupedSampler(lengths, cfg.train.batch_size, seed=cfg.train.seed,
                                            group_by_length=cfg.train.group_by_length)
    real = slots = 0
    import math

    for epoch in range(math.ceil(args.epochs)):
        sampler.set_epoch(epoch)
        for b in sampler.batches():
            real += int(lengths[b].sum())
            slots += len(b) * int(lengths[b].max())
    mc = AutoConfig.from_pretrained(model_path(args.model))
    params = encoder_params(mc)
    return {
        "train_samples_per_s": m["train_samples_per_second"],
        "train_seconds": m["train_runtime_s"],
        "test_accuracy": round(m["test"]["accuracy"], 4),
        "precision": m["precision"],
        "padded_token_share": round(1 - real / max(slots, 1), 4),
        "real_tokens": real,
        "flops": args.epochs * sum(flops_per_sequence(mc, params, int(L)) for L in lengths),
        "wall_s": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": rss,
        "settings": {k: v for k, v in flat.items() if k not in ("train", "test", "output_dir")},
    }


# ------------------------------------------------------------------------------------------ driver


def run_child(args, role: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", role, "--subset-csv", str(args.subset_csv), "--test", args.test,
           "--model", args.model, "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
           "--seed", str(args.seed), "--threads", str(args.threads), "--device", args.device,
           "--peak-tokens", str(args.peak_tokens), "--peak-rounds", str(args.peak_rounds)]
    for s in args.set or []:
        cmd += ["--set", s]
    if args.acceltune_head_lr:
        cmd.append("--acceltune-head-lr")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if args.verbose else subprocess.PIPE, text=True, env=env)
    if p.returncode != 0:
        log(p.stderr[-4000:] if p.stderr else "")
        raise SystemExit(f"{role} failed (exit {p.returncode})")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    log(f"  {role}: {json.dumps(res)}  ({time.perf_counter() - t:.0f}s)")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", default=str(DATA / "train.csv"))
    ap.add_argument("--test", default=str(DATA / "test.csv"))
    ap.add_argument("--subset", type=int, default=3000, help="training examples, seeded sample of --train (0: all)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--sides", default=",".join(SIDES))
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=None, help="torch threads per side (default: all usable cores)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--set", action="append", metavar="FIELD=VALUE",
                    help="acceltune TrainConfig override (repeatable), e.g. --set precision=fp32 --set group_by_length=false")
    ap.add_argument("--acceltune-head-lr", action="store_true",
                    help="keep acceltune's default head learning rate (10x --lr) instead of --lr, the Trainer's")
    ap.add_argument("--peak-tokens", type=int, default=512, help="rows of the peak GEMMs (batch 32 x 16 tokens)")
    ap.add_argument("--peak-rounds", type=int, default=5)
    ap.add_argument("--no-peak", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="show the children's stderr")
    ap.add_argument("--worker", choices=(*SIDES, "peak"), help=argparse.SUPPRESS)
    ap.add_argument("--subset-csv", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads is None:
        args.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    if args.worker:
        fn = {"peak": peak_worker, "trainer_default": lambda a: trainer_worker(a, False),
              "trainer_best": lambda a: trainer_worker(a, True), "acceltune": acceltune_worker}[args.worker]
        print(json.dumps(fn(args)))
        return

    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    bad = set(sides) - set(SIDES)
    if bad:
        raise SystemExit(f"unknown side(s) {sorted(bad)}: choose from {', '.join(SIDES)}")
    work = Path(tempfile.mkdtemp(prefix="train-speed-"))
    args.subset_csv = make_subset(args.train, args.subset, args.seed, work / "train_subset.csv")
    log(f"subset: {args.subset_csv} ({args.subset or 'all'} examples), test: {args.test}, threads {args.threads}")
    load = os.getloadavg()
    peak = None if args.no_peak else run_child(args, "peak")
    runs = {s: [] for s in sides}
    for r in range(args.repeats):
        order = sides if r % 2 == 0 else sides[::-1]  # alternate, so a drifting load hits every side alike
        log(f"repeat {r + 1}/{args.repeats}: {', '.join(order)}")
        for s in order:
            runs[s].append(run_child(args, s))

    def med(s, key):
        return statistics.median(x[key] for x in runs[s])

    out = {"machine": {"cpu": cpu_model(), "cores": args.threads, "device": device_of(args.device),
                       "load_avg_at_start": [round(x, 2) for x in load], "load_avg_at_end": [round(x, 2) for x in os.getloadavg()]},
           "subset": args.subset, "epochs": args.epochs, "repeats": args.repeats, "batch_size": args.batch_size,
           "lr": args.lr, "matmul_peak_gflops": peak, "sides": {}}
    for s in sides:
        rec = {k: med(s, k) for k in ("train_samples_per_s", "train_seconds", "test_accuracy", "padded_token_share", "wall_s", "peak_rss_mb")}
        rec["train_samples_per_s_all"] = [x["train_samples_per_s"] for x in runs[s]]
        rec["test_accuracy_all"] = [x["test_accuracy"] for x in runs[s]]  # run-to-run spread, not only the median
        rec["precision"] = runs[s][0]["precision"]
        flops_s = statistics.median(x["flops"] / x["train_seconds"] for x in runs[s])
        rec["real_token_gflops"] = round(flops_s / 1e9, 1)
        if peak and rec["precision"] in peak:
            rec["mfu_real_tokens"] = round(flops_s / 1e9 / peak[rec["precision"]], 3)
        if "settings" in runs[s][0]:
            rec["settings"] = runs[s][0]["settings"]
        out["sides"][s] = rec
    if "acceltune" in out["sides"]:
        a = out["sides"]["acceltune"]
        for s in ("trainer_default", "trainer_best"):
            if s in out["sides"]:
                t = out["sides"][s]
                out[f"speedup_vs_{s}"] = round(a["train_samples_per_s"] / t["train_samples_per_s"], 2)
                out[f"accuracy_delta_vs_{s}"] = round(a["test_accuracy"] - t["test_accuracy"], 4)
                out[f"rss_ratio_vs_{s}"] = round(a["peak_rss_mb"] / t["peak_rss_mb"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
