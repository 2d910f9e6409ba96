"""`acceltune predict MODEL_DIR --input FILE|- --output FILE|-`: one result per input, in input order."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path

from acceltune.commands.common import add_inference_arguments, load_predictor
from acceltune.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_inference_arguments(parser)
    parser.add_argument("--input", required=True, help="file of texts (CSV, TSV, JSONL, Parquet, .txt one per line) or - for stdin")
    parser.add_argument("--output", default="-", help="JSONL or CSV file (by extension), or - for stdout (JSONL)")
    parser.add_argument("--format", choices=("jsonl", "csv"), default=None, help="output format (default: from --output's extension)")
    parser.add_argument("--top-k", type=int, default=3, help="how many of the best labels each result lists")
    parser.add_argument("--id-column", default=None, help="copy this input column into each result")


def run(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor
    from functools import partial

    from acceltune.data import load_texts

    if args.top_k < 1:
        raise UserError(f"--top-k must be at least 1, got {args.top_k}")
    fmt = args.format or ("csv" if args.output.endswith(".csv") else "jsonl")
    if args.output != "-" and Path(args.output).exists() and not args.overwrite:
        raise UserError(f"{args.output} already exists: pass --overwrite to replace it, or another --output")
    read = partial(load_texts, args.input, args.text_column, args.text_pair_column, delimiter=args.delimiter,
                   encoding=args.encoding, column_names=args.column_names)
    if args.input == "-":  # stdin may be a terminal: a model error must not wait for the end of its input
        predictor = load_predictor(args)
        texts, pairs, table = read()
    else:
        # The file is read while the model loads (building an ONNX Runtime session keeps about one core busy):
        # on a large input, reading costs no wall time. The model's errors still come first.
        with ThreadPoolExecutor(1) as pool:
            reading = pool.submit(read)
            predictor = load_predictor(args)
            texts, pairs, table = reading.result()
    if args.id_column and args.id_column not in table.column_names:
        raise UserError(f"--id-column {args.id_column!r} not found; columns are: {', '.join(table.column_names)}")
    results = predictor.predict(texts, pairs, top_k=args.top_k)
    if args.id_column:
        for r, value in zip(results, table[args.id_column]):
            r["id"] = value
    if fmt == "csv":
        text = to_csv(results)
    else:
        encode = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(r, ensure_ascii=False) without a new encoder per line
        text = "".join([encode(r) + "\n" for r in results])
    if args.output == "-":
        sys.stdout.write(text)
    else:
        from acceltune.modeldir import atomic_write_text

        atomic_write_text(args.output, text)
        print(f"{len(results)} predictions written to {args.output}", file=sys.stderr)
    return 0


def to_csv(results: list[dict]) -> str:
    buf = io.StringIO()
    fields = ((["id"] if results and "id" in results[0] else []) + ["label", "score"]
              + (["oos", "oos_score"] if results and "oos" in results[0] else []) + ["truncated", "top_k"])
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator=os.linesep)
    writer.writeheader()
    for r in results:
        writer.writerow({**r, "top_k": json.dumps(r["top_k"])})
    return buf.getvalue()
