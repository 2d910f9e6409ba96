"""MovieLens ml-latest-small, one split, one protocol, side by side: acceltune's sequential recommender,
most-popular, item-kNN and RecTools 0.19's SASRecModel; then cold start (10% of items held out of training,
added afterwards with `add-items`); then serving latency (a 10,000-item model under 64 connections, wrk).
Prints one JSON object.

    .venv/bin/python benchmarks/recommend_movielens.py --epochs 30 > runs/recommend_movielens.json

Protocol: leave-one-out per user (last rating = test, the one before = validation); full ranking over every
item, the user's history excluded. Ours trains on the training events and keeps the best validation NDCG@10;
RecTools (no validation-based stopping) fits the same training events plus the validation items, so that at
test time both see the same history, for the same number of epochs and the same shape (hidden 64, 2 blocks,
2 heads, 200 items, dropout 0.2, lr 1e-3, full softmax, the same --batch-size: 32 by default, not SASRec's 128:
MovieLens-small is ~1,000 training windows, 8 steps an epoch at 128, and at equal optimizer time 32 reached
a far better NDCG, see docs/recommend.md). RecTools runs in its own virtual
environment (it pins numpy<2 and pandas<3), made on first use under runs/.venv-rectools.
The data is read from ../shared/data/movielens_small (research-use licence: see its README.txt); nothing
is copied into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "movielens_small"
VENV = ROOT / "runs" / ".venv-rectools"

RECTOOLS = r"""
import json, sys, time
import numpy as np, pandas as pd
from rectools.dataset import Dataset
from rectools.models import SASRecModel
args = json.loads(sys.argv[1])
df = pd.read_csv(args["train"], dtype={"user_id": str, "item_id": str})
df["datetime"] = pd.to_datetime(df["datetime"], unit="s")
df["weight"] = 1.0
dataset = Dataset.construct(df)
model = SASRecModel(n_factors=64, n_blocks=2, n_heads=2, session_max_len=200, dropout_rate=0.2, lr=1e-3,
                    batch_size=args["batch_size"], epochs=args["epochs"], loss="softmax", deterministic=True, verbose=0)
t = time.perf_counter()
model.fit(dataset)
fit_s = time.perf_counter() - t
test = pd.read_csv(args["test"], dtype={"user_id": str, "item_id": str})
reco = model.recommend(users=test["user_id"].unique(), dataset=dataset, k=20, filter_viewed=True)
rank = {(u, i): r - 1 for u, i, r in zip(reco["user_id"].astype(str), reco["item_id"].astype(str), reco["rank"])}
ranks = np.array([rank.get((u, i), 10**9) for u, i in zip(test["user_id"], test["item_id"])])
print(json.dumps({"train_s": round(fit_s, 2), "hr@10": float(np.mean(ranks < 10)),
                  "ndcg@10": float(np.mean(np.where(ranks < 10, 1 / np.log2(ranks + 2.0), 0))),
                  "recall@20": float(np.mean(ranks < 20)), "users": int(len(ranks))}))
"""


def rectools_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        # torch first: the local CPU wheel, not a CUDA build pulled in by rectools[torch]
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "rectools[torch]==0.19.0", "numpy<2", "pandas<3"], check=True)
    return python


def write_events(path: Path, rows) -> None:
    with open(path, "w") as f:
        f.write("user_id,item_id,datetime\n")
        for u, i, t in rows:
            f.write(f"{u},{i},{t:.0f}\n")


def train_ours(interactions: Path, items: Path, out: Path, epochs: int, seed: int, batch_size: int, settings: dict):
    from acceltune import DataArgs, ModelArgs, TrainArgs, TrainConfig, train
    from acceltune.recommend.command import TRAIN_DEFAULTS
    from acceltune.recommend.model import MAX_INPUT_TOKENS
    from acceltune.recommend.task import RecommendSettings, SequentialRecommendation

    args = TrainArgs(**{**TRAIN_DEFAULTS, "epochs": float(epochs), "batch_size": batch_size}, output_dir=str(out), label_smoothing=0.0, seed=seed,
                     overwrite=True)
    config = TrainConfig(data=DataArgs(train=str(interactions)),
                         model=ModelArgs(max_length=MAX_INPUT_TOKENS, freeze_embeddings=False), train=args)
    started = time.perf_counter()
    result = train(config, task=SequentialRecommendation(RecommendSettings(items=str(items), **settings), text_cache_dir=out), quiet=True)
    return result.metrics, time.perf_counter() - started


def main_comparison(args, tmp: Path) -> dict:
    from acceltune.recommend.data import InteractionColumns, leave_one_out, read_interactions, read_items

    items = read_items(DATA / "movies.csv")
    data = read_interactions(DATA / "ratings.csv", InteractionColumns(), items, str(DATA / "movies.csv"))
    split = leave_one_out(data.sequences)
    ids = data.catalogue.ids
    metrics, wall = train_ours(DATA / "ratings.csv", DATA / "movies.csv", tmp / "ours", args.epochs, args.seed, args.batch_size,
                               model_settings(args))
    result = {"ours": {"hr@10": metrics["test"]["hr@10"], "ndcg@10": metrics["test"]["ndcg@10"],
                       "recall@20": metrics["test"]["recall@20"], "mrr": metrics["test"]["mrr"],
                       "train_s": round(wall, 2), "optimizer_steps_s": metrics["train_runtime_s"],
                       "best_step": metrics["best_step"], "steps": metrics["global_steps"], "precision": metrics["precision"]}}
    for name, m in metrics["baselines"].items():
        result[name] = {k: m[k] for k in ("hr@10", "ndcg@10", "recall@20", "mrr")}
        result[name]["train_s"] = None  # fitted and scored inside our run (Task.finalize), not timed apart
    if args.skip_rectools:
        return result
    # RecTools: the same events before each test item (training + validation), same test targets.
    rows, test_rows = [], []
    evaluated = {int(u): r for r, u in enumerate(split.eval_users)}
    for u, user in enumerate(data.users):
        seq, times = data.sequences[u], data.times[u]
        keep = len(seq) - 1 if u in evaluated else len(seq)
        rows += [(user, ids[i], t) for i, t in zip(seq[:keep], times[:keep])]
        if u in evaluated:
            test_rows.append((user, ids[seq[-1]], times[-1]))
    write_events(tmp / "rt_train.csv", rows)
    write_events(tmp / "rt_test.csv", test_rows)
    spec = json.dumps({"train": str(tmp / "rt_train.csv"), "test": str(tmp / "rt_test.csv"), "epochs": args.epochs,
                       "batch_size": args.batch_size})
    started = time.perf_counter()
    try:
        out = subprocess.run([str(rectools_python()), "-c", RECTOOLS, spec], capture_output=True, text=True,
                             timeout=args.timeout_s, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:  # ours is measured already: keep it, say what RecTools did
        result["rectools_sasrec"] = {"error": f"timed out after {args.timeout_s} s (--timeout-s)"}
        return result
    if out.returncode != 0:
        result["rectools_sasrec"] = {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    else:
        result["rectools_sasrec"] = json.loads(out.stdout.strip().splitlines()[-1])
        result["rectools_sasrec"]["process_s"] = round(time.perf_counter() - started, 2)
    return result


def cold_start(args, tmp: Path) -> dict:
    """10% of items (random, seed) never seen in training; added with add-items; on the test cases whose target is
one of them: HR@10, HR@100, the median rank of the target, the share of top-10 slots that are cold items; the
same for a text-kNN content baseline. (An id-only model or popularity cannot rank an unseen item at all.)"""
    import pandas as pd

    from acceltune.recommend.additems import add_items
    from acceltune.recommend.recommender import Recommender

    ratings = pd.read_csv(DATA / "ratings.csv", dtype=str)
    movies = pd.read_csv(DATA / "movies.csv", dtype=str)
    rng = np.random.default_rng(args.seed)
    held = set(rng.choice(movies["movieId"].to_numpy(), size=len(movies) // 10, replace=False).tolist())
    ratings["ts"] = ratings["timestamp"].astype(float)
    ratings = ratings.sort_values(["userId", "ts"], kind="stable")
    last = ratings.groupby("userId").tail(1)
    cases = last[last["movieId"].isin(held)]
    warm = ratings[~ratings["movieId"].isin(held)]
    warm.drop(columns="ts").to_csv(tmp / "cold_ratings.csv", index=False)
    movies[~movies["movieId"].isin(held)].to_csv(tmp / "cold_movies.csv", index=False)
    movies[movies["movieId"].isin(held)].to_csv(tmp / "held_movies.csv", index=False)
    metrics, wall = train_ours(tmp / "cold_ratings.csv", tmp / "cold_movies.csv", tmp / "cold", args.cold_epochs, args.seed,
                               args.batch_size, model_settings(args))
    added, _ = add_items(tmp / "cold", str(tmp / "held_movies.csv"))
    rec = Recommender(tmp / "cold")
    index = rec.catalogue.item_index
    histories = [[index[m] for m in warm[warm["userId"] == user]["movieId"]] for user in cases["userId"]]
    targets = np.array([index[m] for m in cases["movieId"]], dtype=np.int64)
    is_cold = np.zeros(rec.num_items, bool)
    is_cold[[index[m] for m in held]] = True
    if not histories:
        return {"held_out_items": len(held), "added": added, "test_cases": 0}
    ours = rec.score(histories).numpy().copy()  # a torch inference tensor: excluded in place below
    # Content baseline on the same cases: cosine between an item's text embedding and the mean text embedding
    # of the user's last 10 items (what "recommend from text alone" gives without any learning).
    text = rec.model.item_text.numpy()
    profile = np.stack([text[h[-10:]].mean(0) for h in histories])
    content = profile @ (text / np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)).T

    def summary(scores: np.ndarray, histories=histories, targets=targets) -> dict:
        for r, h in enumerate(histories):
            scores[r, h] = -np.inf  # the history is excluded, as in the main protocol
        ranks = (scores > scores[np.arange(len(targets)), targets][:, None]).sum(1)
        top10 = np.argsort(-scores, 1)[:, :10]
        return {"hr@10": float(np.mean(ranks < 10)), "hr@100": float(np.mean(ranks < 100)),
                "ndcg@10": float(np.mean(np.where(ranks < 10, 1 / np.log2(ranks + 2.0), 0))),
                "median_target_rank": float(np.median(ranks)), "cold_share_of_top10": round(float(is_cold[top10].mean()), 4)}

    # What the added items cost the others: every user whose last rating is a warm movie, ranked over the grown
    # catalogue (added items included) from their warm ratings before it.
    warm_cases = last[~last["movieId"].isin(held)]
    warm_histories = [[index[m] for m in warm[warm["userId"] == user]["movieId"]][:-1] for user in warm_cases["userId"]]
    warm_targets = np.array([index[m] for m in warm_cases["movieId"]], dtype=np.int64)
    warm_after = summary(rec.score(warm_histories).numpy().copy(), warm_histories, warm_targets)
    return {"held_out_items": len(held), "added": added, "test_cases": len(targets),
            "cold_share_of_catalogue": round(float(is_cold.mean()), 4), "ours": summary(ours),
            "text_knn": summary(content), "train_s": round(wall, 2), "epochs": args.cold_epochs,
            "warm_test": {k: metrics["test"][k] for k in ("hr@10", "ndcg@10")},
            "warm_cases_after_add_items": {"cases": len(warm_targets), **warm_after}, **model_settings(args)}


def model_settings(args) -> dict:
    """The recommender settings this run changes from the CLI's defaults."""
    return {k: getattr(args, k) for k in ("id_dropout", "cold_targets") if getattr(args, k) is not None}


def serving(args, tmp: Path) -> dict:
    """p99 and requests/s of POST /v1/recommend at 64 connections, a 10,000-item catalogue (synthetic, one training
    step: latency does not depend on what was learned), histories of 50 items, k=10, wrk closed loop; the trained
    model directory (PyTorch) and its ONNX export (ONNX Runtime), one after the other, the same requests, with
    each of --serve-processes server processes."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from serve_load import free_port, run_wrk, start_server, status_counts

    from acceltune import DataArgs, ModelArgs, TrainArgs, TrainConfig, train
    from acceltune.recommend.export import export_onnx
    from acceltune.recommend.model import MAX_INPUT_TOKENS
    from acceltune.recommend.task import RecommendSettings, SequentialRecommendation

    rng = np.random.default_rng(args.seed)
    items = args.serve_items
    with open(tmp / "serve_events.csv", "w") as f:
        f.write("user_id,item_id,timestamp\n")
        for u in range(2000):
            for t, i in enumerate(rng.integers(0, items, 30)):
                f.write(f"u{u},{i},{t}\n")
        for i in range(items):  # every item in the catalogue
            f.write(f"all,{i},{i}\n")
    config = TrainConfig(data=DataArgs(train=str(tmp / "serve_events.csv")),
                         model=ModelArgs(max_length=MAX_INPUT_TOKENS, freeze_embeddings=False),
                         train=TrainArgs(output_dir=str(tmp / "serve_model"), max_steps=1, batch_size=128, label_smoothing=0.0))
    train(config, task=SequentialRecommendation(RecommendSettings(max_validation_users=100)), quiet=True)
    export_onnx(tmp / "serve_model", tmp / "serve_onnx")
    bodies = [json.dumps({"history": [str(i) for i in rng.integers(0, items, 50)], "k": 10}) for _ in range(200)]
    out = {"items": items, "connections": args.connections, "history_length": 50}
    for processes in args.serve_processes:
        for backend, model_dir in (("torch", tmp / "serve_model"), ("onnx", tmp / "serve_onnx")):
            port = free_port()
            cmd = [sys.executable, "-m", "acceltune", "recommend", "serve", str(model_dir), "--port", str(port),
                   "--db", f"sqlite:///{tmp / 'serve_events.db'}", "--max-queue", "1024", "--processes", str(processes),
                   *args.serve_arg]
            name = backend if processes == 1 else f"{backend}_{processes}_processes"
            with start_server(cmd, port, log_path=tmp / f"serve_{name}.log") as server:
                run_wrk(server.url, bodies, args.connections, 3.0, path="/v1/recommend")  # warm-up
                result = run_wrk(server.url, bodies, args.connections, args.serve_duration, path="/v1/recommend")
                result["statuses"] = status_counts(server.url, "/v1/recommend")
            out[name] = result
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=30, help="epochs for ours (at most; early stopping) and RecTools")
    p.add_argument("--cold-epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=32, help="ours and RecTools (see the module docstring)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--id-dropout", type=float, default=None, help="ours: recommend train's --id-dropout (default: its default)")
    p.add_argument("--cold-targets", type=float, default=None, help="ours: recommend train's --cold-targets (default: its default)")
    p.add_argument("--timeout-s", type=int, default=2400, help="RecTools' process")
    p.add_argument("--skip-rectools", action="store_true")
    p.add_argument("--skip-cold-start", action="store_true")
    p.add_argument("--only-serving", action="store_true", help="run only the serving measurement")
    p.add_argument("--only-cold-start", action="store_true", help="run only the cold-start measurement")
    p.add_argument("--skip-serving", action="store_true")
    p.add_argument("--serve-items", type=int, default=10_000)
    p.add_argument("--serve-arg", action="append", default=[], help="extra `acceltune recommend serve` argument (repeatable)")
    p.add_argument("--serve-duration", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--serve-processes", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2],
                   help="recommend serve's --processes, each measured (comma-separated)")
    args = p.parse_args()
    if not (DATA / "ratings.csv").is_file():
        sys.exit(f"no MovieLens data at {DATA}: this benchmark reads ../shared/data/movielens_small")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.only_serving:
            print(json.dumps({"cpu_count": os.cpu_count(), "load_average_at_start": round(load, 2),
                              "serving": serving(args, tmp), "load_average_at_end": round(os.getloadavg()[0], 2)}, indent=2))
            return
        if args.only_cold_start:
            print(json.dumps({"cpu_count": os.cpu_count(), "load_average_at_start": round(load, 2),
                              "cold_start": cold_start(args, tmp), "load_average_at_end": round(os.getloadavg()[0], 2)}, indent=2))
            return
        out = {"dataset": "movielens ml-latest-small", "epochs": args.epochs, "batch_size": args.batch_size, "cpu_count": os.cpu_count(),
               "load_average_at_start": round(load, 2), **main_comparison(args, tmp)}
        ours, rt, pop = out["ours"], out.get("rectools_sasrec", {}), out["most_popular"]
        if "ndcg@10" in rt:
            out["ndcg_vs_rectools"] = round(ours["ndcg@10"] / max(rt["ndcg@10"], 1e-12), 3)
            out["train_time_vs_rectools"] = round(ours["train_s"] / max(rt["train_s"], 1e-12), 3)
        out["ndcg_vs_most_popular"] = round(ours["ndcg@10"] / max(pop["ndcg@10"], 1e-12), 3)
        if not args.skip_cold_start:
            out["cold_start"] = cold_start(args, tmp)
        if not args.skip_serving:
            out["serving"] = serving(args, tmp)
        out["load_average_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
