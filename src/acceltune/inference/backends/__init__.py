"""Inference backends behind one interface (see base.Backend). Chosen by the model directory's format."""

from __future__ import annotations

from pathlib import Path

from acceltune.inference.backends.base import Backend
from acceltune.errors import UserError
from acceltune.modeldir import ModelInfo

BACKENDS = ("auto", "torch", "onnx", "tensorrt")


def load_backend(model_dir: str | Path, info: ModelInfo, name: str = "auto", device: str = "auto",
                 precision: str = "auto", threads: int | None = None) -> Backend:
    """``threads``: inference threads on the CPU (ONNX Runtime's intra-op threads; torch's, process-wide; None:
    every usable core)."""
    name = (name or "auto").lower()
    if name not in BACKENDS:
        raise UserError(f"unknown --backend {name!r}: use one of {', '.join(BACKENDS)}")
    fmt = info.format
    if name == "auto":
        name = {"transformers": "torch", "onnx": "onnx", "tensorrt": "tensorrt"}[fmt]
    if name == "torch":
        if fmt != "transformers":
            raise UserError(f"--backend torch needs a trained model directory, but {model_dir} holds an {fmt} export: use --backend {fmt} or auto")
        from acceltune.inference.backends.torch_backend import TorchBackend

        return TorchBackend(model_dir, device=device, precision=precision, threads=threads)
    if fmt == "transformers":
        raise UserError(f"--backend {name} needs an exported model: run 'acceltune export {model_dir} --format {name} --output DIR' and pass DIR")
    if name == "onnx":
        if fmt == "tensorrt":
            # A TensorRT export is an ONNX model plus an engine cache: ONNX Runtime can run it without TensorRT.
            pass
        from acceltune.inference.backends.onnx_backend import OnnxBackend

        return OnnxBackend(model_dir, info, device=device, threads=threads)
    if name == "tensorrt":
        from acceltune.inference.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(model_dir, info, device=device)
    raise AssertionError(name)
