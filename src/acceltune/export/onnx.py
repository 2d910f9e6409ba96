"""The ONNX graph of a trained classifier: exported with two outputs, optimised, optionally quantized to int8.

How the graph is made (measured choices, see docs/benchmarks.md):

* ``torch.onnx.export(dynamo=True)`` with dynamic batch and sequence axes. The TorchScript exporter
  (dynamo=False) silently bakes the example's mask and length into transformers 5 models (logit
  differences of 0.3 and more), so it is not used.
* Two outputs: "logits" and "features", the pooled vector the classifier head reads (see
  acceltune.inference.heads); the backends return both.
* Encoder models (BERT, RoBERTa, ...) are exported with eager attention and the additive 4-D mask
  computed outside the model, then two small rewrites give the graph the shape ONNX Runtime's
  transformer optimizer recognises (mask ``Unsqueeze`` split in two, score scaling as ``Div``),
  so it fuses Attention, SkipLayerNormalization and BiasGelu. Other architectures (GPT-2 style)
  get ONNX Runtime's portable (basic) graph optimisation instead.
* int8: dynamic quantization (weights int8 per tensor, activations uint8 at run time), which on
  AVX-512 VNNI / AMX runs the u8s8 integer kernels; reduce_range is only needed without VNNI.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

DEFAULT_OPSET = 18
OUTPUT_NAMES = ["logits", "features"]

#: model_type values exported with the BERT-style attention rewrite and fused by ORT's "bert" optimizer.
ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert"}


def _input_names(model, tokenizer) -> list[str]:
    import inspect

    params = inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in params and "token_type_ids" in getattr(tokenizer, "model_input_names", []):
        names.append("token_type_ids")
    return names


class _Wrapper:
    """nn.Module factory: positional inputs in a fixed order -> (logits, features)."""

    @staticmethod
    def build(model, names: list[str], additive_mask: bool):
        """``model``: a WithFeatures (acceltune.inference.heads) around the classifier."""
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
                logits, features = self.model(**kwargs)
                return logits if features is None else (logits, features)

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
def quiet():
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


def torch_export(model, tokenizer, path: Path, opset: int, additive_mask: bool) -> list[str]:
    """Write ``model`` (a WithFeatures) to ``path``; returns the input names."""
    import torch

    names = _input_names(model.model, tokenizer)
    wrapper = _Wrapper.build(model, names, additive_mask)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    args = _example_inputs(names, model.config.vocab_size, tokenizer.pad_token_id or 0)
    with quiet(), torch.no_grad():
        torch.onnx.export(
            wrapper, args, str(path), dynamo=True, external_data=False, opset_version=opset,
            input_names=names, output_names=OUTPUT_NAMES if model.head is not None else OUTPUT_NAMES[:1],
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


def optimize(src: Path, dst: Path, config, encoder: bool) -> dict:
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


def quantize_int8(src: Path, dst: Path) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Measured on MiniLM-L6 / Banking77 (docs/benchmarks.md): per-channel weights agree more
    # often with fp32 at the same speed; reduce_range (7-bit weights, for CPUs without VNNI) loses
    # accuracy on VNNI/AMX CPUs; quantizing the fused Attention (QAttention) beats MatMul-only;
    # int8 embedding tables (Gather) cut the file from 56 to 22 MB at no measurable agreement cost.
    options = {"per_channel": True, "reduce_range": False, "weight_type": "QInt8",
               "op_types": ["MatMul", "Attention", "Gather"]}
    with quiet():
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=options["op_types"],
                         per_channel=options["per_channel"], reduce_range=options["reduce_range"],
                         weight_type=QuantType.QInt8)
    return {"method": "dynamic", **options}
