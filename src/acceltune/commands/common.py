"""Flags shared by the commands that run a trained or exported model (evaluate, predict)."""

from __future__ import annotations

import argparse


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="directory written by 'acceltune train' or 'acceltune export'")
    parser.add_argument("--backend", default="auto", help="auto | torch | onnx | tensorrt (auto: from the directory's format)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--precision", default="auto", help="torch backend only: auto | fp32 | fp16 | bf16")
    parser.add_argument("--max-batch-tokens", type=int, default=None, help="padded tokens per inference batch (default: 512 on CPU, 8192 on GPU)")
    parser.add_argument("--text-column", default=None, help="column with the text (default: auto-detected)")
    parser.add_argument("--text-pair-column", default=None, help="second text column, for pair models")
    parser.add_argument("--delimiter", default=None, help="field separator of delimited text input")
    parser.add_argument("--encoding", default="utf-8", help="text encoding of the input file")
    parser.add_argument("--column-names", default=None, help="comma-separated column names for input without a header")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


THREADS_VARIABLE = "ACCELTUNE_THREADS"


def inference_threads() -> int | None:
    """ONNX Runtime threads from the user's ACCELTUNE_THREADS (None: the backend uses every usable core).
    Read here, at the command line's edge, and passed to Predictor: the library reads no environment."""
    import os

    from acceltune.errors import UserError

    value = os.environ.get(THREADS_VARIABLE)
    if not value:
        return None
    try:
        return max(1, int(value))
    except ValueError:
        raise UserError(f"{THREADS_VARIABLE}={value!r} is not a number of threads: set a whole number or unset it") from None


def load_predictor(args: argparse.Namespace):
    from acceltune.inference.predictor import Predictor

    return Predictor(args.model_dir, backend=args.backend, device=args.device, precision=args.precision,
                     max_batch_tokens=args.max_batch_tokens, threads=inference_threads())
