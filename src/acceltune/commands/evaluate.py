"""`acceltune evaluate MODEL_DIR --data FILE`: metrics.json and report.md for any labeled file."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from acceltune.commands.common import add_inference_arguments, load_predictor
from acceltune.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_inference_arguments(parser)
    parser.add_argument("--data", required=True, help="labeled file (same formats as 'acceltune train --train')")
    parser.add_argument("--label-column", default=None, help="column with the label (default: auto-detected)")
    parser.add_argument("--output-dir", default=None, help="where metrics.json and report.md go (default: MODEL_DIR/evaluation/<data file name>)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from acceltune.config import DataArgs
    from acceltune.data import load_labeled
    from acceltune.metrics import compute_metrics, write_metrics
    from acceltune.report import write_report

    out = Path(args.output_dir) if args.output_dir else Path(args.model_dir) / "evaluation" / Path(args.data).stem
    if (out / "metrics.json").exists() and not args.overwrite:
        raise UserError(f"{out / 'metrics.json'} already exists: pass --overwrite to replace it or choose --output-dir")
    predictor = load_predictor(args)
    data_args = DataArgs(text_column=args.text_column, text_pair_column=args.text_pair_column, label_column=args.label_column,
                         delimiter=args.delimiter, encoding=args.encoding, column_names=args.column_names,
                         multi_label=predictor.info.multi_label)
    dataset = load_labeled(args.data, data_args, labels=predictor.labels)
    pairs = dataset["text_pair"] if "text_pair" in dataset.column_names else None
    start = time.perf_counter()
    logits, truncated = predictor.logits(dataset["text"], pairs)
    seconds = time.perf_counter() - start
    result = compute_metrics(logits, dataset["labels"], predictor.labels, predictor.info.multi_label,
                             predictor.info.threshold, detailed=True)
    result["truncated_inputs"] = int(sum(truncated))
    metrics = {"model_dir": str(args.model_dir), "data": str(args.data), **predictor.backend.describe(),
               "inference_seconds": round(seconds, 3), "sequences_per_second": round(len(dataset) / max(seconds, 1e-9), 1),
               "test": result}
    out.mkdir(parents=True, exist_ok=True)
    write_metrics(out / "metrics.json", metrics)
    report = write_report(out, metrics, predictor.labels, split="test", title=f"acceltune evaluation: {Path(args.data).name}")
    Console().print(f"accuracy {result['accuracy']:.4f} · macro F1 {result['macro_f1']:.4f} · {result['examples']} examples · "
                    f"{metrics['sequences_per_second']} sequences/s ({metrics['backend']})\nmetrics: {out / 'metrics.json'} · report: {report}")
    return 0
