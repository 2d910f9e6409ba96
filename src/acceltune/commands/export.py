"""`acceltune export`: a trained model directory -> a self-contained ONNX (fp32/int8) or TensorRT directory."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", metavar="MODEL_DIR", help="trained model directory (written by 'acceltune train')")
    p.add_argument("--format", default="onnx", choices=["onnx", "tensorrt"],
                   help="onnx: CPU/CUDA with ONNX Runtime; tensorrt: fp16 TensorRT engine (NVIDIA GPU)")
    p.add_argument("--quantize", default=None, choices=["int8"],
                   help="int8: dynamic int8 quantization for the CPU (onnx only); leave out for fp32")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="directory to write (must not exist, or be empty, unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output directory")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (18 or newer: the torch dynamo exporter's minimum)")
    p.add_argument("--calibration-data", default=None, metavar="FILE",
                   help="sample texts (any file 'acceltune predict' reads: CSV/JSONL/Parquet or one per line) from the model's domain; used for the "
                        "parity check (int8 uses dynamic quantization, which needs no calibration: static calibration "
                        "measured worse, see docs/benchmarks.md)")
    p.add_argument("--parity-data", default=None, metavar="FILE",
                   help="texts for the parity check (default: --calibration-data, else the test/validation/train file named in the model's training_config.yaml, else the demo test set)")
    p.add_argument("--text-column", default=None, help="text column of --parity-data/--calibration-data (default: the first of text, sentence, content, message, utterance, question)")
    p.add_argument("--max-accuracy-drop", type=float, default=None, metavar="POINTS",
                   help="int8 on labelled parity data: accept at most this many accuracy points below fp32 (default: 0.5)")
    p.add_argument("--min-agreement", type=float, default=None, metavar="FRACTION",
                   help="int8: judge by label agreement with fp32 on its confident predictions, and accept this much "
                        "(0-1; default 0.99, used where the parity data has no labels)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")


def run(args: argparse.Namespace) -> int:
    from acceltune.export import export_model

    quiet = bool(args.json)
    result = export_model(
        args.model_dir, args.output, format=args.format, quantize=args.quantize, opset=args.opset,
        overwrite=args.overwrite, calibration_data=args.calibration_data, parity_data=args.parity_data,
        log=(lambda msg: None) if quiet else (lambda msg: print(msg, flush=True)), text_column=args.text_column,
        min_agreement=args.min_agreement, max_accuracy_drop=args.max_accuracy_drop,
    )
    if quiet:
        print(json.dumps({"output": str(result.output), "format": result.format, "quantization": result.quantization or "none",
                          "parity": result.parity, "optimization": result.optimization, "files": result.files,
                          "seconds": round(result.seconds, 1)}))
    else:
        print(f"wrote {result.output} ({', '.join(result.files)}) in {result.seconds:.1f}s")
    return 0
