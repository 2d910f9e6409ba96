"""ONNX Runtime backend for directories written by `acceltune export --format onnx` (fp32 or int8).

CPU: one intra-op thread per usable core unless the caller passes ``threads``, sequential execution,
all graph optimisations, spinning threads (lowest latency; see docs/benchmarks.md).
Outputs: "logits" and, in exports made since they carry it, "features" (the head's pooled input).
CUDA: the CUDA execution provider when onnxruntime-gpu is installed and a GPU is visible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from acceltune.inference.backends.base import Backend, Outputs
from acceltune.cpu import usable_cpu_count
from acceltune.errors import UserError
from acceltune.modeldir import ModelInfo


def onnx_file(model_dir: Path, info: ModelInfo) -> Path:
    name = (info.extra or {}).get("file") or "model.onnx"
    path = Path(model_dir) / name
    if not path.is_file():
        raise UserError(f"{path} is missing: the directory is not a complete export; run 'acceltune export' again")
    return path


def onnx_session_options(threads: int | None = None, spinning: bool = True):
    """ONNX Runtime session options for the CPU, as this backend uses them (see the module docstring)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or usable_cpu_count()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.log_severity_level = 3
    return so


def resolve_ort_device(device: str) -> str:
    """'cpu' or 'cuda:N' for ONNX Runtime; a device asked for but unavailable is a UserError."""
    from acceltune.extras import require
    from acceltune.hardware import parse_device

    ort = require("onnxruntime", "export")
    kind, index = parse_device(device)
    device = (device or "auto").strip().lower()
    providers = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in providers
    if kind == "auto":
        return "cuda:0" if has_cuda and _gpu_visible() else "cpu"  # torch is imported only with onnxruntime-gpu
    if kind == "cpu":
        return "cpu"
    if not has_cuda:
        raise UserError(f"--device {device} with --backend onnx needs onnxruntime-gpu (this onnxruntime {ort.__version__} "
                        f"has {', '.join(providers)}): pip install onnxruntime-gpu, or use --device cpu")
    if not _gpu_visible():
        raise UserError(f"--device {device}: no CUDA GPU is visible: use --device cpu")
    return f"cuda:{index or 0}"


def _gpu_visible() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        return False


def output_names(session) -> tuple[str, ...]:
    """("logits", "features"), or the first output alone for exports made before they carried features."""
    names = [o.name for o in session.get_outputs()]
    return ("logits", "features") if "logits" in names and "features" in names else (names[0],)


def feature_output(session, names: tuple[str, ...]) -> tuple[bool, int | None]:
    """Whether the session has a features output, and its width (fixed in the export)."""
    if len(names) < 2:
        return False, None
    width = next(o.shape[-1] for o in session.get_outputs() if o.name == names[1])
    return True, width if isinstance(width, int) else None


def run_session(session, input_names, names: tuple[str, ...], batch: dict[str, np.ndarray]) -> Outputs:
    feed = {k: np.ascontiguousarray(batch[k], dtype=np.int64) for k in input_names}
    out = session.run(list(names), feed)
    features = out[1].astype(np.float32, copy=False) if len(out) > 1 else None
    return Outputs(out[0].astype(np.float32, copy=False), features)


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(self, model_dir: str | Path, info: ModelInfo, device: str = "auto", threads: int | None = None):
        from acceltune.extras import require

        ort = require("onnxruntime", "export")
        self.model_dir = Path(model_dir)
        self.info = info
        self.path = onnx_file(self.model_dir, info)
        self.device = resolve_ort_device(device)
        if self.device == "cpu":
            so = onnx_session_options(threads)
            providers = ["CPUExecutionProvider"]
            self.threads = so.intra_op_num_threads
        else:
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.log_severity_level = 3
            providers = [("CUDAExecutionProvider", {"device_id": int(self.device.split(":")[1])}), "CPUExecutionProvider"]
            self.threads = None
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            raise UserError(f"ONNX Runtime cannot load {self.path}: {str(e).strip().splitlines()[0][:300]}") from None
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = output_names(self.session)
        self.has_features, self.feature_size = feature_output(self.session, self.output_names)
        self.pad_to_multiple_of = None if self.device == "cpu" else 8

    def forward(self, batch: dict[str, np.ndarray]) -> Outputs:
        return run_session(self.session, self.input_names, self.output_names, batch)

    def describe(self) -> dict:
        extra = self.info.extra or {}
        return {"backend": self.name, "device": self.device, "file": self.path.name,
                "quantization": extra.get("quantization", "none"), "threads": self.threads,
                "providers": self.session.get_providers()}
