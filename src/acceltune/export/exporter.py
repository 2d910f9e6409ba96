"""Export a trained model directory to ONNX (fp32 or int8) or TensorRT, checked for parity.

The result is a self-contained model directory: ``model.onnx`` (or ``model_int8.onnx``), the
tokenizer files, ``config.json`` and ``acceltune.json`` (format "onnx" or "tensorrt"; ``extra``
records the file, outputs, quantization, opset, the graph optimisation applied and the parity
result). Nothing is written to the output until the export passed its parity check: the work happens
in a temporary directory beside the output, which is renamed into place at the end.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from acceltune.errors import UserError
from acceltune.export import onnx as graph
from acceltune.export.parity import (MAX_ACCURACY_DROP, check_parity, default_parity_data, read_parity_data,
                                     torch_reference)
from acceltune.modeldir import ModelInfo

FORMATS = ("onnx", "tensorrt")
QUANTIZATIONS = (None, "int8")


@dataclass
class ExportResult:
    output: Path
    format: str
    quantization: str | None
    parity: dict
    optimization: dict
    seconds: float
    files: list[str] = field(default_factory=list)


def export_model(model_dir: str | os.PathLike, output: str | os.PathLike, format: str = "onnx",
                 quantize: str | None = None, opset: int | None = None, overwrite: bool = False,
                 calibration_data: str | os.PathLike | None = None, parity_data: str | os.PathLike | None = None,
                 log: Callable[[str], None] = print, *, text_column: str | None = None,
                 min_agreement: float | None = None, max_accuracy_drop: float | None = None) -> ExportResult:
    """Export ``model_dir`` to ``output``; raises UserError (and writes nothing) when anything fails.

    int8 is judged by accuracy on labelled parity data (within ``max_accuracy_drop`` points of fp32,
    default 0.5), else by label agreement on confident predictions (``min_agreement``, default 0.99);
    giving ``min_agreement`` judges by agreement even where labels exist. See acceltune.export.parity.
    """
    start = time.perf_counter()
    model_dir, output = Path(model_dir), Path(output)
    fmt = (format or "onnx").lower()
    if fmt not in FORMATS:
        raise UserError(f"unknown --format {format!r}: use one of {', '.join(FORMATS)}")
    quantize = (quantize or None) and quantize.lower()
    if quantize in ("none", "fp32"):
        quantize = None
    if quantize not in QUANTIZATIONS:
        raise UserError(f"unknown --quantize {quantize!r}: use int8 (or leave it out for fp32)")
    if fmt == "tensorrt" and quantize:
        raise UserError("--quantize int8 is for --format onnx (CPU); --format tensorrt builds an fp16 engine")
    if (min_agreement is not None or max_accuracy_drop is not None) and quantize != "int8":
        raise UserError("--min-agreement and --max-accuracy-drop judge an int8 export: use them with --quantize int8")
    if min_agreement is not None and not 0 <= min_agreement <= 1:
        raise UserError(f"--min-agreement {min_agreement:g} must be a fraction between 0 and 1 (e.g. 0.98)")
    if max_accuracy_drop is not None and not 0 <= max_accuracy_drop <= 100:
        raise UserError(f"--max-accuracy-drop {max_accuracy_drop:g} must be accuracy points between 0 and 100 (e.g. 1.0)")
    opset = int(opset or graph.DEFAULT_OPSET)
    if opset < 18:
        raise UserError(f"--opset {opset}: the exporter (torch.onnx dynamo) needs opset 18 or newer")
    from acceltune.extras import require

    for module in ("onnx", "onnxscript", "onnxruntime"):  # the exporter, its dynamo backend, the parity check
        require(module, "export")
    info = ModelInfo.load(model_dir)
    if info.format != "transformers":
        raise UserError(f"{model_dir} is already an {info.format} export: export from the trained model directory")
    _check_output(model_dir, output, overwrite)
    if fmt == "tensorrt":
        from acceltune.inference.backends.tensorrt_backend import require_tensorrt

        require_tensorrt("auto")  # fail before any work on a machine without a GPU or TensorRT

    given = parity_data or calibration_data
    data = read_parity_data(given, text_column) if given else default_parity_data(model_dir)
    if max_accuracy_drop is not None and data.labels is None:
        raise UserError(f"--max-accuracy-drop needs labelled parity data, and {data.source} has no label column: "
                        "pass --parity-data FILE with a label column, or use --min-agreement")

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from acceltune.inference.heads import WithFeatures

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        hf_model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, attn_implementation="eager", dtype=torch.float32).eval()
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the model from {model_dir} ({e.__class__.__name__}: {str(e).splitlines()[0]})") from None
    config = hf_model.config
    parameters = sum(p.numel() for p in hf_model.parameters())
    model = WithFeatures(hf_model).eval()

    encoder = fmt == "onnx" and config.model_type in graph.ENCODER_TYPES and not getattr(config, "is_decoder", False)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        raw = tmp / "model.raw.onnx"
        log(f"exporting {model_dir} ({config.model_type}, {parameters / 1e6:.1f}M parameters) to ONNX opset {opset}")
        try:
            names = graph.torch_export(model, tokenizer, raw, opset, additive_mask=encoder)
        except Exception as e:  # the exporter raises many types; the user needs the first line
            raise UserError(f"torch.onnx.export failed for {config.model_type}: {e.__class__.__name__}: {str(e).strip().splitlines()[0][:300]}") from None
        outputs = graph.OUTPUT_NAMES if model.head is not None else graph.OUTPUT_NAMES[:1]
        extra: dict = {"opset": opset, "inputs": names, "outputs": outputs, "quantization": quantize or "none"}
        if fmt == "onnx":
            fp32 = tmp / "model.onnx"
            extra["optimization"] = graph.optimize(raw, fp32, config, encoder)
            raw.unlink()
            fused = extra["optimization"].get("fused_operators")
            log(f"graph optimisation: {extra['optimization']['method']}" + (f", fused {fused}" if fused else ""))
            if quantize == "int8":
                q = tmp / "model_int8.onnx"
                extra["quantization_details"] = graph.quantize_int8(fp32, q)
                fp32.unlink()
                extra["file"] = q.name
            else:
                extra["file"] = fp32.name
        else:
            from acceltune.inference.backends.tensorrt_backend import trt_profile

            raw.rename(tmp / "model.onnx")
            extra["file"] = "model.onnx"
            extra["precision"] = "fp16"
            extra["engine_cache"] = "trt_cache"
            extra["profile"] = trt_profile(names, info.max_length)
        tokenizer.save_pretrained(tmp)
        config.save_pretrained(tmp)
        _copy_oos_statistics(model_dir, tmp, info)
        out_info = ModelInfo(**{**info.__dict__, "format": fmt, "extra": extra})  # the out-of-scope rule (info.oos) too
        out_info.save(tmp)

        log(f"checking parity on {len(data.texts)} texts from {data.source}")
        parity = check_parity(torch_reference(model), tmp, data, quantize, fmt,
                              backend="tensorrt" if fmt == "tensorrt" else "onnx",
                              min_agreement=min_agreement, max_accuracy_drop=max_accuracy_drop)
        log(_summary(parity))
        if not parity["passed"]:
            raise UserError(_refusal(parity, quantize, output))
        out_info.extra["parity"] = {k: v for k, v in parity.items() if k not in ("passed",)}
        out_info.save(tmp)
        files = sorted(p.name for p in tmp.iterdir())
        _publish(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    return ExportResult(output, fmt, quantize, parity, extra.get("optimization", {}), seconds, files)


def _copy_oos_statistics(model_dir: Path, out: Path, info: ModelInfo) -> None:
    """The out-of-scope rule's statistics file travels with the export, so the export decides the same way."""
    if not info.oos:
        return
    from acceltune.oos import STATS_FILE

    if (model_dir / STATS_FILE).is_file():
        shutil.copy2(model_dir / STATS_FILE, out / STATS_FILE)


def _summary(p: dict) -> str:
    parts = [f"max |logit difference| {p['max_abs_logit_diff']:.2e}", f"label agreement {p['label_agreement']:.2%}"]
    if "feature_cosine_min" in p:
        parts.append(f"features: max |difference| {p['max_abs_feature_diff']:.2e}, cosine >= {p['feature_cosine_min']:.4f}")
    if "accuracy" in p:
        parts.append(f"accuracy {p['accuracy']:.2%} (torch fp32 {p['reference_accuracy']:.2%})")
    if "oos_agreement" in p:
        parts.append(f"out-of-scope decisions agree on {p['oos_agreement']:.2%}")
    return f"parity: {', '.join(parts)} ({p['criterion']}: {'passed' if p['passed'] else 'FAILED'})"


def _refusal(p: dict, quantize: str | None, output: Path) -> str:
    """The one-line refusal: what failed, that nothing was written, and the way forward."""
    nothing = f"nothing was written to {output}"
    if quantize != "int8":
        return (f"parity check failed ({p['criterion']}; got max |logit difference| {p['max_abs_logit_diff']:.2e}, "
                f"agreement {p['label_agreement']:.2%} on {p['texts']} texts): {nothing}")
    if p["criterion"].startswith("int8 accuracy"):
        needed = math.ceil(p["accuracy_drop_points"] * 10) / 10
        return (f"int8 parity check failed: int8 accuracy {p['accuracy']:.2%} against fp32 {p['reference_accuracy']:.2%} "
                f"on {p['labelled_texts']} labelled texts from {p['source']} ({p['criterion']}): {nothing}; "
                f"export without --quantize for fp32, or accept the drop with --max-accuracy-drop {needed:g}")
    needed = math.floor(p["confident_agreement"] * 100) / 100
    return (f"int8 parity check failed: int8 gives the fp32 label on {p['confident_agreement']:.2%} of "
            f"{p['confident_predictions']} confident predictions ({p['texts']} texts from {p['source']}; {p['criterion']}): "
            f"{nothing}; export without --quantize for fp32, judge by accuracy with labelled --parity-data FILE "
            f"(within {MAX_ACCURACY_DROP:g} points), or accept it with --min-agreement {needed:g}")


def _check_output(model_dir: Path, output: Path, overwrite: bool) -> None:
    if output.resolve() == model_dir.resolve():
        raise UserError(f"--output {output} is the model directory itself: choose a new directory")
    if output.exists():
        if not output.is_dir():
            raise UserError(f"--output {output} exists and is not a directory")
        if any(output.iterdir()) and not overwrite:
            raise UserError(f"--output {output} already exists and is not empty: pass --overwrite to replace it, or choose another directory")


def _publish(tmp: Path, output: Path) -> None:
    """Move the finished temporary directory into place (replacing an old output last)."""
    old = None
    if output.exists():
        old = output.parent / f".{output.name}.old-{os.getpid()}-{int(time.time())}"
        os.replace(output, old)
    try:
        os.replace(tmp, output)
    except BaseException:
        if old is not None:
            os.replace(old, output)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
