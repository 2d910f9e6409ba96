"""TensorRT backend: ONNX Runtime's TensorRT execution provider, fp16, engine cache in the model directory.

A `--format tensorrt` export holds the fp32 ONNX graph (no CPU-specific fusions, so the whole graph
goes to TensorRT) and ``extra.profile``: one optimisation profile (min/opt/max shapes over batch
and sequence length). The engine is built on first load (minutes) and cached in ``trt_cache/``.
Needs an NVIDIA GPU, onnxruntime-gpu with the TensorRT provider and the TensorRT libraries.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from acceltune.inference.backends.base import Backend, Outputs
from acceltune.errors import UserError
from acceltune.modeldir import ModelInfo

MAX_BATCH = 256  # Predictor's default max_batch_size
OPT_BATCH = 32


def trt_profile(input_names: list[str] | tuple[str, ...], max_length: int) -> dict:
    """min/opt/max shapes, in the provider's 'name:BxS,...' syntax, covering every batch Predictor makes."""
    max_seq = max(8, -(-int(max_length) // 8) * 8)  # Predictor pads to a multiple of 8 on GPUs
    opt_seq = min(64, max_seq)

    def spec(b: int, s: int) -> str:
        return ",".join(f"{n}:{b}x{s}" for n in input_names)

    return {"min": spec(1, 1), "opt": spec(OPT_BATCH, opt_seq), "max": spec(MAX_BATCH, max_seq)}


def require_tensorrt(device: str = "auto") -> int:
    """The CUDA device index TensorRT will use; UserError when the machine cannot run TensorRT."""
    from acceltune.hardware import parse_device

    kind, index = parse_device(device)
    device = (device or "auto").strip().lower()
    if kind == "cpu":
        raise UserError("--backend tensorrt runs on an NVIDIA GPU, not --device cpu: use --backend onnx for the CPU")
    try:
        import torch

        gpu = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        gpu = False
    if not gpu:
        raise UserError("TensorRT needs an NVIDIA GPU and none is visible: on this machine use 'acceltune export --format onnx' "
                        "(optionally --quantize int8) and --backend onnx")
    import onnxruntime as ort

    providers = ort.get_available_providers()
    if "TensorrtExecutionProvider" not in providers:
        raise UserError(f"TensorRT is not available to ONNX Runtime {ort.__version__} (providers: {', '.join(providers)}): "
                        "pip install onnxruntime-gpu tensorrt (acceltune[gpu]), or use --format onnx")
    if index is None:
        return 0
    if index >= torch.cuda.device_count():
        raise UserError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return index


class TensorRTBackend(Backend):
    name = "tensorrt"
    pad_to_multiple_of = 8

    def __init__(self, model_dir: str | Path, info: ModelInfo, device: str = "auto"):
        if info.format != "tensorrt":
            raise UserError(f"--backend tensorrt needs a TensorRT export: run 'acceltune export MODEL_DIR --format tensorrt --output DIR' "
                            f"({model_dir} is a {info.format} directory; use --backend onnx for it)")
        device_id = require_tensorrt(device)
        import onnxruntime as ort

        from acceltune.inference.backends.onnx_backend import feature_output, onnx_file, output_names

        self.model_dir = Path(model_dir).resolve()
        self.info = info
        extra = info.extra or {}
        self.path = onnx_file(self.model_dir, info)
        cache = self.model_dir / extra.get("engine_cache", "trt_cache")
        cache.mkdir(exist_ok=True)
        profile = extra.get("profile") or trt_profile(extra.get("inputs", ["input_ids", "attention_mask"]), info.max_length)
        trt_options = {
            "device_id": device_id,
            "trt_fp16_enable": extra.get("precision", "fp16") == "fp16",
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
            "trt_profile_min_shapes": profile["min"],
            "trt_profile_opt_shapes": profile["opt"],
            "trt_profile_max_shapes": profile["max"],
        }
        so = ort.SessionOptions()
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(self.path), so,
                providers=[("TensorrtExecutionProvider", trt_options), ("CUDAExecutionProvider", {"device_id": device_id})])
        except Exception as e:  # provider or engine build failures come as onnxruntime exceptions
            raise UserError(f"TensorRT could not build or load the engine for {self.path}: {str(e).strip().splitlines()[0][:300]}") from None
        if "TensorrtExecutionProvider" not in self.session.get_providers():
            raise UserError("ONNX Runtime fell back from TensorRT (check the TensorRT and CUDA library versions): use --backend onnx")
        self.device = f"cuda:{device_id}"
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = output_names(self.session)
        self.has_features, self.feature_size = feature_output(self.session, self.output_names)

    def forward(self, batch: dict[str, np.ndarray]) -> Outputs:
        from acceltune.inference.backends.onnx_backend import run_session

        return run_session(self.session, self.input_names, self.output_names, batch)

    def describe(self) -> dict:
        return {"backend": self.name, "device": self.device, "precision": (self.info.extra or {}).get("precision", "fp16"),
                "file": self.path.name}
