"""Export a trained model directory to ONNX (fp32 or int8) or TensorRT, checked for parity.

The result is a self-contained model directory: ``model.onnx`` (or ``model_int8.onnx``), the
tokenizer files, ``config.json`` and ``acceltune.json`` (format "onnx" or "tensorrt"; ``extra``
records the file, quantization, opset and the graph optimisation applied). Nothing is written to
the output until the export passed its parity check: the work happens in a temporary directory
beside the output, which is renamed into place at the end.

How the ONNX graph is made (measured choices, see docs/benchmarks.md):

* ``torch.onnx.export(dynamo=True)`` with dynamic batch and sequence axes. The TorchScript exporter
  (dynamo=False) silently bakes the example's mask and length into transformers 5 models (logit
  differences of 0.3 and more), so it is not used.
* Encoder models (BERT, RoBERTa, ...) are exported with eager attention and the additive 4-D mask
  computed outside the model, then two small rewrites give the graph the shape ONNX Runtime's
  transformer optimizer recognises (mask ``Unsqueeze`` split in two, score scaling as ``Div``),
  so it fuses Attention, SkipLayerNormalization and BiasGelu. Other architectures (GPT-2 style)
  get ONNX Runtime's portable (basic) graph optimisation instead.
* int8: dynamic quantization (weights int8 per tensor, activations uint8 at run time), which on
  AVX-512 VNNI / AMX runs the u8s8 integer kernels; reduce_range is only needed without VNNI.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from acceltune.errors import UserError
from acceltune.modeldir import ModelInfo

FORMATS = ("onnx", "tensorrt")
QUANTIZATIONS = (None, "int8")
DEFAULT_OPSET = 18
FP32_TOLERANCE = 1e-3
INT8_MIN_AGREEMENT = 0.99
TRT_MIN_AGREEMENT = 0.99
PARITY_MAX_TEXTS = 512

#: model_type values exported with the BERT-style attention rewrite and fused by ORT's "bert" optimizer.
ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert"}

BUILTIN_SENTENCES = [
    "I still have not received my new card, I ordered over a week ago.",
    "How do I locate my card?",
    "The movie was a complete waste of time.",
    "Absolutely loved it, would recommend to anyone!",
    "Can I top up my account with a cheque?",
    "My transfer has been pending for three days, what is going on?",
    "ok",
    "Why was I charged a fee for withdrawing cash abroad when the app said it would be free of charge?",
    "The service was fine, nothing special.",
    "Please cancel the transaction I made this morning.",
    "What exchange rate will I get?",
    "terrible",
]


@dataclass
class ExportResult:
    output: Path
    format: str
    quantization: str | None
    parity: dict
    optimization: dict
    seconds: float
    files: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------- helpers


def read_texts(path: str | os.PathLike, text_column: str | None = None, limit: int = PARITY_MAX_TEXTS) -> list[str]:
    """Parity/calibration texts: any file `acceltune predict` reads (CSV/TSV/JSON/JSONL/Parquet/text), spread out."""
    from acceltune.data import load_texts

    texts, _, _ = load_texts(str(path), text_column)
    if not texts:
        raise UserError(f"{path} holds no texts")
    return spread(texts, limit)


def spread(texts: Sequence[str], limit: int = PARITY_MAX_TEXTS) -> list[str]:
    """At most `limit` texts evenly spread over the input, not just its head."""
    if len(texts) <= limit:
        return list(texts)
    idx = np.linspace(0, len(texts) - 1, limit).round().astype(int)
    return [texts[i] for i in idx]


def default_parity_texts(model_dir: Path | None = None) -> tuple[list[str], str]:
    """In-domain texts when the model's training data is still where training_config.yaml says
    (test, then validation, then train), else the demo test set, else built-in sentences."""
    for texts, source in _training_data_texts(model_dir):
        return texts, source
    demo = Path(__file__).parent / "demo_data" / "test.csv"
    if demo.is_file():
        try:
            return read_texts(demo), str(demo)
        except UserError:
            pass
    return list(BUILTIN_SENTENCES), "built-in sentences"


def _training_data_texts(model_dir: Path | None):
    """Yields at most one (texts, source): out-of-domain texts sit near decision boundaries and
    understate int8 agreement, so the model's own data is the better parity sample."""
    from acceltune.modeldir import TRAINING_CONFIG_FILE

    cfg_path = Path(model_dir) / TRAINING_CONFIG_FILE if model_dir else None
    if cfg_path is None or not cfg_path.is_file():
        return
    import yaml

    from acceltune.data import load_texts

    data = (yaml.safe_load(cfg_path.read_text()) or {}).get("data", {})
    for key in ("test", "validation", "train"):
        path = data.get(key)
        if not path or not Path(path).exists():
            continue
        try:
            texts, _, _ = load_texts(path, data.get("text_column"), None, delimiter=data.get("delimiter"),
                                     encoding=data.get("encoding") or "utf-8", column_names=data.get("column_names"))
        except UserError:
            continue
        yield spread(texts), str(path)
        return


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


# ----------------------------------------------------------------------------------- ONNX export


def _input_names(model, tokenizer) -> list[str]:
    import inspect

    params = inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in params and "token_type_ids" in getattr(tokenizer, "model_input_names", []):
        names.append("token_type_ids")
    return names


class _Wrapper:
    """nn.Module factory: positional inputs in a fixed order -> logits."""

    @staticmethod
    def build(model, names: list[str], additive_mask: bool):
        import torch

        class Export(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask, token_type_ids=None):
                mask = attention_mask
                if additive_mask:
                    # The classic BERT extended mask: (1 - m) * min, shaped (batch, 1, 1, seq).
                    m = attention_mask.unsqueeze(1).unsqueeze(2).to(torch.float32)
                    mask = (1.0 - m) * torch.finfo(torch.float32).min
                kwargs = {"input_ids": input_ids, "attention_mask": mask}
                if token_type_ids is not None:
                    kwargs["token_type_ids"] = token_type_ids
                return self.model(**kwargs).logits

        return Export().eval()


def _example_inputs(names: list[str], vocab_size: int, pad_id: int):
    import torch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(min(5, vocab_size - 1), vocab_size, (2, 8), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    ids[1, 5:] = pad_id
    feats = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return tuple(feats[n] for n in names)


@contextmanager
def _quiet():
    """Silence the exporters' chatter (torchvision notices, pre-processing hints) below errors."""
    import logging

    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _torch_export(model, tokenizer, path: Path, opset: int, additive_mask: bool) -> list[str]:
    import torch

    names = _input_names(model, tokenizer)
    wrapper = _Wrapper.build(model, names, additive_mask)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    args = _example_inputs(names, model.config.vocab_size, tokenizer.pad_token_id or 0)
    with _quiet(), torch.no_grad():
        torch.onnx.export(
            wrapper, args, str(path), dynamo=True, external_data=False, opset_version=opset,
            input_names=names, output_names=["logits"],
            dynamic_shapes=tuple({0: batch, 1: seq} for _ in names), verbose=False,
        )
    return names


def _rewrite_for_fusion(path: Path) -> int:
    """Give the exported encoder graph the shapes ORT's BERT attention fusion matches. Returns rewrites."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    consumers: dict[str, list] = {}
    producers = {o: n for n in g.node for o in n.output}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    rewrites, nodes = 0, []
    g.initializer.append(helper.make_tensor("acceltune_axis_1", onnx.TensorProto.INT64, [1], [1]))
    g.initializer.append(helper.make_tensor("acceltune_axis_2", onnx.TensorProto.INT64, [1], [2]))
    for n in g.node:
        # 1. The exporter merges unsqueeze(1).unsqueeze(2) of the mask; the fusion wants two nodes.
        if n.op_type == "Unsqueeze" and n.input[0] == "attention_mask" and len(n.input) > 1:
            axes = consts.get(n.input[1])
            if axes is not None and [int(a) for a in np.ravel(axes)] == [1, 2]:
                mid = n.output[0] + "_acceltune_u1"
                nodes.append(helper.make_node("Unsqueeze", [n.input[0], "acceltune_axis_1"], [mid], name=n.name + "_a"))
                nodes.append(helper.make_node("Unsqueeze", [mid, "acceltune_axis_2"], [n.output[0]], name=n.name + "_b"))
                rewrites += 1
                continue
        # 2. scores * scale -> scores / (1/scale): the mask's Mul must be the only Mul feeding the Add.
        if n.op_type == "Mul" and len(n.input) == 2:
            src = producers.get(n.input[0])
            scale = consts.get(n.input[1])
            outs = consumers.get(n.output[0], [])
            if (src is not None and src.op_type == "MatMul" and scale is not None and scale.size == 1
                    and float(scale.ravel()[0]) > 0 and len(outs) == 1 and outs[0].op_type == "Add"
                    and any(c.op_type == "Softmax" for c in consumers.get(outs[0].output[0], []))):
                name = n.name + "_acceltune_inv_scale"
                inv = np.asarray(1.0 / float(scale.ravel()[0]), dtype=scale.dtype).reshape(scale.shape)
                g.initializer.append(numpy_helper.from_array(inv, name))
                nodes.append(helper.make_node("Div", [n.input[0], name], list(n.output), name=n.name + "_div"))
                rewrites += 1
                continue
        nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    onnx.save(model, str(path))
    return rewrites


def _optimize(src: Path, dst: Path, config, encoder: bool) -> dict:
    """Transformer fusions for encoders; ORT's portable graph optimisation for everything else."""
    import onnxruntime as ort

    if encoder:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model

        rewrites = _rewrite_for_fusion(src)
        num_heads = int(getattr(config, "num_attention_heads", 0) or getattr(config, "n_heads", 0) or 0)
        hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "dim", 0) or 0)
        options = FusionOptions("bert")
        opt = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden,
                             optimization_options=options, opt_level=0)
        stats = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
        opt.save_model_to_file(str(dst))
        return {"method": "onnxruntime.transformers.optimizer", "model_type": "bert", "num_heads": num_heads,
                "hidden_size": hidden, "graph_rewrites": rewrites, "fused_operators": stats}
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    return {"method": "onnxruntime graph optimisation", "level": "basic (portable; 'all' is applied at load)"}


def _quantize_int8(src: Path, dst: Path) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Measured on MiniLM-L6 / Banking77 (docs/benchmarks.md): per-channel weights agree more
    # often with fp32 at the same speed; reduce_range (7-bit weights, for CPUs without VNNI) loses
    # accuracy on VNNI/AMX CPUs; quantizing the fused Attention (QAttention) beats MatMul-only;
    # int8 embedding tables (Gather) cut the file from 56 to 22 MB at no measurable agreement cost.
    options = {"per_channel": True, "reduce_range": False, "weight_type": "QInt8",
               "op_types": ["MatMul", "Attention", "Gather"]}
    with _quiet():
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=options["op_types"],
                         per_channel=options["per_channel"], reduce_range=options["reduce_range"],
                         weight_type=QuantType.QInt8)
    return {"method": "dynamic", **options}


# ------------------------------------------------------------------------------------------ parity


def check_parity(reference: Callable[[dict], np.ndarray], export_dir: Path, texts: Sequence[str],
                 quantization: str | None, fmt: str, backend: str = "onnx", device: str = "auto",
                 int8_min_agreement: float = INT8_MIN_AGREEMENT) -> dict:
    """Score ``texts`` with the exported directory and with ``reference`` on the very same padded batches."""
    from acceltune.inference.predictor import Predictor

    pred = Predictor(export_dir, backend=backend, device=device)
    pairs = list(texts[1:]) + list(texts[:1]) if pred.info.text_pair else None
    encoded = pred.encode(texts, pairs)
    ref = np.zeros((len(texts), len(pred.labels)), dtype=np.float32)
    got = np.zeros_like(ref)
    for idx in pred.batches(encoded.lengths):
        feats = pred.pad(encoded, idx)
        got[idx] = pred.backend.logits(feats)
        ref[idx] = reference(feats)
    if pred.info.multi_label:
        agree = float(np.mean((ref >= 0) == (got >= 0)))
    else:
        agree = float(np.mean(ref.argmax(1) == got.argmax(1)))
    max_diff = float(np.max(np.abs(ref - got))) if len(texts) else 0.0
    if fmt == "tensorrt":
        criterion, ok = f"label agreement >= {TRT_MIN_AGREEMENT:.0%} (fp16)", agree >= TRT_MIN_AGREEMENT
    elif quantization == "int8":
        criterion, ok = f"label agreement >= {int8_min_agreement:.0%}", agree >= int8_min_agreement
    else:
        criterion, ok = f"max |logit difference| <= {FP32_TOLERANCE:g}", max_diff <= FP32_TOLERANCE
    return {"texts": len(texts), "max_abs_logit_diff": max_diff, "label_agreement": agree,
            "criterion": criterion, "passed": bool(ok)}


def _torch_reference(model):
    import torch

    @torch.inference_mode()
    def run(feats: dict[str, np.ndarray]) -> np.ndarray:
        inputs = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feats.items()}
        return model(**inputs).logits.float().numpy()

    return run


# ------------------------------------------------------------------------------------------- main


def export_model(model_dir: str | os.PathLike, output: str | os.PathLike, format: str = "onnx",
                 quantize: str | None = None, opset: int | None = None, overwrite: bool = False,
                 calibration_data: str | os.PathLike | None = None, parity_data: str | os.PathLike | None = None,
                 log: Callable[[str], None] = print, *, text_column: str | None = None,
                 int8_min_agreement: float = INT8_MIN_AGREEMENT) -> ExportResult:
    """Export ``model_dir`` to ``output``; raises UserError (and writes nothing) when anything fails.

    ``int8_min_agreement`` (library only, for experiments such as benchmarks on probe models) relaxes
    the int8 label-agreement criterion; the CLI always uses INT8_MIN_AGREEMENT.
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
    opset = int(opset or DEFAULT_OPSET)
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

    if parity_data or calibration_data:
        texts, source = read_texts(parity_data or calibration_data, text_column), str(parity_data or calibration_data)
    else:
        texts, source = default_parity_texts(model_dir)

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, attn_implementation="eager", dtype=torch.float32).eval()
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the model from {model_dir} ({e.__class__.__name__}: {str(e).splitlines()[0]})") from None

    encoder = fmt == "onnx" and model.config.model_type in ENCODER_TYPES and not getattr(model.config, "is_decoder", False)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        raw = tmp / "model.raw.onnx"
        log(f"exporting {model_dir} ({model.config.model_type}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters) to ONNX opset {opset}")
        try:
            names = _torch_export(model, tokenizer, raw, opset, additive_mask=encoder)
        except Exception as e:  # the exporter raises many types; the user needs the first line
            raise UserError(f"torch.onnx.export failed for {model.config.model_type}: {e.__class__.__name__}: {str(e).strip().splitlines()[0][:300]}") from None
        extra: dict = {"opset": opset, "inputs": names, "quantization": quantize or "none"}
        if fmt == "onnx":
            fp32 = tmp / "model.onnx"
            extra["optimization"] = _optimize(raw, fp32, model.config, encoder)
            raw.unlink()
            fused = extra["optimization"].get("fused_operators")
            log(f"graph optimisation: {extra['optimization']['method']}" + (f", fused {fused}" if fused else ""))
            if quantize == "int8":
                q = tmp / "model_int8.onnx"
                extra["quantization_details"] = _quantize_int8(fp32, q)
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
        model.config.save_pretrained(tmp)
        out_info = ModelInfo(**{**info.__dict__, "format": fmt, "extra": extra})
        out_info.save(tmp)

        log(f"checking parity on {len(texts)} texts from {source}")
        parity = check_parity(_torch_reference(model), tmp, texts, quantize, fmt,
                              backend="tensorrt" if fmt == "tensorrt" else "onnx", int8_min_agreement=int8_min_agreement)
        parity["source"] = source
        log(f"parity: max |logit difference| {parity['max_abs_logit_diff']:.2e}, label agreement "
            f"{parity['label_agreement']:.2%} ({parity['criterion']}: {'passed' if parity['passed'] else 'FAILED'})")
        if not parity["passed"]:
            raise UserError(f"parity check failed ({parity['criterion']}; got max |diff| {parity['max_abs_logit_diff']:.2e}, "
                            f"agreement {parity['label_agreement']:.2%} on {len(texts)} texts): nothing was written to {output}")
        out_info.extra["parity"] = {k: parity[k] for k in ("texts", "source", "max_abs_logit_diff", "label_agreement")}
        out_info.save(tmp)
        files = sorted(p.name for p in tmp.iterdir())
        _publish(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    return ExportResult(output, fmt, quantize, parity, extra.get("optimization", {}), seconds, files)
