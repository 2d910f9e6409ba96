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
    import numpy as np
    from rich.console import Console

    from acceltune.inference.backends.base import Outputs

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
    rule = predictor.oos_rule
    # The out-of-scope label may be one the model never had as a class (a rule fitted without examples): its rows
    # get the index past the model's labels, which no prediction takes.
    known = predictor.labels + ([rule.label] if rule is not None and rule.label and rule.label not in predictor.labels else [])
    dataset = load_labeled(args.data, data_args, labels=known)
    pairs = dataset["text_pair"] if "text_pair" in dataset.column_names else None
    start = time.perf_counter()
    if rule is not None and rule.needs_features:
        outputs, truncated = predictor.outputs(dataset["text"], pairs)
    else:
        logits, truncated = predictor.logits(dataset["text"], pairs)
        outputs = Outputs(logits, None)
    seconds = time.perf_counter() - start
    labels = np.asarray(dataset["labels"])
    result = compute_metrics(outputs.logits, labels, predictor.labels, predictor.info.multi_label,
                             predictor.info.threshold, detailed=True)
    if rule is not None:
        from acceltune.oos.rule import evaluate_rule

        result.update(evaluate_rule(rule, outputs, labels))
    result["truncated_inputs"] = int(sum(truncated))
    metrics = {"model_dir": str(args.model_dir), "data": str(args.data), **predictor.backend.describe(),
               "inference_seconds": round(seconds, 3), "sequences_per_second": round(len(dataset) / max(seconds, 1e-9), 1),
               **({"oos": {"score": rule.score, "threshold": rule.threshold, "goal": rule.goal, "label": rule.label}}
                  if rule is not None else {}),
               "test": result}
    out.mkdir(parents=True, exist_ok=True)
    write_metrics(out / "metrics.json", metrics)
    report = write_report(out, metrics, predictor.labels, split="test", title=f"acceltune evaluation: {Path(args.data).name}")
    console = Console()
    console.print(f"accuracy {result['accuracy']:.4f} · macro F1 {result['macro_f1']:.4f} · {result['examples']} examples · "
                  f"{metrics['sequences_per_second']} sequences/s ({metrics['backend']})")
    if rule is not None:
        from acceltune.oos.calibration import summary_line

        console.print(summary_line(result, rule.score))
    console.print(f"metrics: {out / 'metrics.json'} · report: {report}")
    return 0
