"""`acceltune recommend train | add-items | export | serve`: thin commands over the recommend package (see docs/recommend.md)."""

from __future__ import annotations

import argparse

# Core training flags the recommender has no use for (text classification's).
UNUSED_TRAIN_FLAGS = ("head_learning_rate", "label_smoothing", "class_weights", "early_stopping_metric", "compile",
                      "logit_norm", "contrastive_weight", "contrastive_temperature", "output_dir")
# SASRec's literature settings for MovieLens (hidden 64, 2 blocks, dropout 0.2, lr 1e-3, full softmax),
# validated every epoch, the best NDCG@10 kept.
TRAIN_DEFAULTS = {"batch_size": 128, "learning_rate": 1e-3, "epochs": 200.0, "warmup_ratio": 0.0, "weight_decay": 0.0,
                  "patience": 10, "keep_checkpoints": 1}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="recommend_command", required=True, metavar="{train,add-items,export,serve}")
    _add_train(sub.add_parser("train", help="train a sequential recommender on interactions (and item text)"))
    a = sub.add_parser("add-items", help="add items (scored from their text) to a trained model without retraining")
    a.add_argument("model_dir", metavar="MODEL_DIR")
    a.add_argument("--items", required=True, metavar="FILE", help="CSV/TSV/Parquet with an id column and text fields")
    a.add_argument("--item-id-column", help="the id column (default: detected: item_id, id, movieId, ...)")
    a.add_argument("--item-text-columns", help="comma-separated text columns (default: every other column)")
    e = sub.add_parser("export", help="the sequence encoder and item matrix as one ONNX graph, parity-checked")
    e.add_argument("model_dir", metavar="MODEL_DIR")
    e.add_argument("--output", required=True, metavar="DIR", help="a new (or empty) directory")
    s = sub.add_parser("serve", help="HTTP API: /v1/recommend, /v1/events (stored), on the shared server")
    s.add_argument("model_dir", metavar="MODEL_DIR", help="a trained model directory (PyTorch) or its export (ONNX Runtime, faster)")
    s.add_argument("--db", default=None, help="SQLAlchemy URL for posted events (default: sqlite:///MODEL_DIR/events.db; "
                                              "PostgreSQL: postgresql://user@host/db)")
    from acceltune.extras import require

    require("fastapi", "serve")
    from acceltune.serve import add_server_arguments

    add_server_arguments(s)


def _add_train(t: argparse.ArgumentParser) -> None:
    from acceltune import TrainArgs, add_dataclass_arguments
    from acceltune.recommend.task import RecommendSettings

    t.add_argument("--interactions", required=True, metavar="FILE", help="CSV/TSV/Parquet: user, item, timestamp (optional rating)")
    t.add_argument("--output-dir", required=True, metavar="DIR")
    t.add_argument("--text-encoder", default="minilm", help="sentence encoder for item text (default: the packaged all-MiniLM-L6-v2)")
    t.add_argument("--item-text-columns", help="comma-separated text columns of --items (default: every column but the id)")
    add_dataclass_arguments(t.add_argument_group("recommender"), RecommendSettings, exclude=("item_text_columns",))
    add_dataclass_arguments(t.add_argument_group("training"), TrainArgs, exclude=UNUSED_TRAIN_FLAGS)
    t.set_defaults(**TRAIN_DEFAULTS)


def run(args: argparse.Namespace) -> int:
    return {"train": _train, "add-items": _add_items, "export": _export, "serve": _serve}[args.recommend_command](args)


def _columns(value: str | None) -> list[str] | None:
    return [c.strip() for c in value.split(",") if c.strip()] if value else None


def _train(args: argparse.Namespace) -> int:
    from acceltune import DataArgs, ModelArgs, TrainArgs, TrainConfig, dataclass_values, train_or_launch
    from acceltune.recommend.model import MAX_INPUT_TOKENS
    from acceltune.recommend.task import RecommendSettings, SequentialRecommendation

    settings = RecommendSettings(**dataclass_values(args, RecommendSettings, exclude=("item_text_columns",)),
                                 item_text_columns=_columns(args.item_text_columns))
    train_args = TrainArgs(**dataclass_values(args, TrainArgs, exclude=UNUSED_TRAIN_FLAGS), output_dir=args.output_dir,
                           label_smoothing=0.0)
    # max_length: the loop never cuts a history; the model reads the last --max-len items and excludes all of them.
    config = TrainConfig(data=DataArgs(train=args.interactions),
                         model=ModelArgs(model=args.text_encoder, max_length=MAX_INPUT_TOKENS, freeze_embeddings=False),
                         train=train_args)
    code, output_dir, metrics = train_or_launch(config, SequentialRecommendation(settings, text_cache_dir=args.output_dir))
    if metrics is None:  # failed (already reported), or not rank 0
        return code
    test = metrics.get("test", {})
    base = metrics.get("baselines", {})
    line = f"test NDCG@10 {test.get('ndcg@10', float('nan')):.4f} · HR@10 {test.get('hr@10', float('nan')):.4f}"
    for name, m in base.items():
        line += f" · {name.replace('_', '-')} NDCG@10 {m['ndcg@10']:.4f}"
    print(f"{line}\nmodel, metrics.json and report.md in {output_dir}")
    return code


def _add_items(args: argparse.Namespace) -> int:
    from acceltune.recommend.additems import add_items

    added, skipped = add_items(args.model_dir, args.items, args.item_id_column, _columns(args.item_text_columns))
    print(f"added {added} item(s) to {args.model_dir}" + (f"; {skipped} already there, skipped" if skipped else ""))
    return 0


def _export(args: argparse.Namespace) -> int:
    from acceltune.recommend.export import export_onnx

    parity = export_onnx(args.model_dir, args.output)
    print(f"wrote {args.output} (ONNX, {parity['items']} items); parity on {parity['examples']} random histories: "
          f"max |diff| {parity['max_abs_diff']:.1e}, same top item {parity['same_top1']:.0%}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from acceltune.recommend.artifacts import load_meta
    from acceltune.recommend.routes import RecommendRoutes
    from acceltune.recommend.store import EventStore
    from acceltune.serve import create_app, run_server, settings_from_args

    load_meta(args.model_dir)  # a wrong directory fails before the port is bound
    db = args.db or f"sqlite:///{Path(args.model_dir).resolve() / 'events.db'}"
    settings = settings_from_args(args, model_dir=args.model_dir)
    EventStore(db).close()  # a bad --db fails before the port is bound, and migrations run once, not per process
    routes = RecommendRoutes(args.model_dir, db)
    return run_server(lambda on_load_error: create_app(settings, routers=[routes.router], on_load_error=on_load_error,
                                                       title="acceltune recommend",
                                                       description="Sequential recommendations with real-time events. See docs/recommend.md."),
                      settings, access_log=args.access_log)
