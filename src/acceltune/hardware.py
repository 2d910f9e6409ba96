"""Device and precision policy: one place decides what a run uses, and says so.

auto precision: bf16 + TF32 on CUDA compute capability >= 8.0 (Ampere, Hopper), fp16 with loss
scaling on 7.x (Volta, Turing: bf16 is emulated and slow there); on the CPU bf16 autocast where it
has native bf16 matmuls (AVX-512 BF16 or AMX: oneDNN runs them on AMX tiles; measured ~1.7x faster
training of MiniLM than fp32 with the same test accuracy, see docs/benchmarks.md), else fp32;
CPU inference (for_training=False) stays fp32 under auto.
Asking for what the machine cannot do is a UserError, never a silent fallback.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from acceltune.cpu import cpu_flags, cpu_has_bf16, cpu_model_name, usable_cpu_count  # noqa: F401 (re-exported)
from acceltune.errors import UserError

if TYPE_CHECKING:  # torch is imported where a device or precision is resolved: parse_device serves the ONNX path too
    import torch

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


@dataclass(frozen=True)
class Precision:
    name: str
    """fp32 | fp16 | bf16"""
    autocast_dtype: torch.dtype | None
    """dtype for torch.autocast, None for plain fp32."""
    loss_scaling: bool
    """fp16 needs a GradScaler; bf16 and fp32 do not."""
    tf32: bool
    """Allow TF32 matmuls (Ampere and newer)."""

    @property
    def accelerate_name(self) -> str:
        """The name accelerate's ``mixed_precision`` expects."""
        return {"fp32": "no", "fp16": "fp16", "bf16": "bf16"}[self.name]


FP32 = Precision("fp32", None, False, False)


def parse_device(text: str | None) -> tuple[str, int | None]:
    """The one reading of a --device string: ("auto" | "cpu" | "cuda", GPU index or None).

    Only the spelling is checked here; whether the device exists is the caller's (torch, ONNX Runtime)."""
    device = (text or "auto").strip().lower()
    if device in ("auto", "cpu", "cuda"):
        return device, None
    m = re.fullmatch(r"cuda:(\d+)", device)
    if m is None:
        raise UserError(f"unknown --device {text!r}: use auto, cpu, cuda or cuda:N")
    return "cuda", int(m.group(1))


def resolve_device(requested: str = "auto") -> "torch.device":
    import torch

    kind, index = parse_device(requested)
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cpu":
        return torch.device("cpu")
    shown = requested.strip().lower()
    if not torch.cuda.is_available():
        raise UserError(f"--device {shown} was asked for but no CUDA GPU is visible (torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}): use --device cpu or install a CUDA build of torch")
    if index is not None and index >= torch.cuda.device_count():
        raise UserError(f"--device {shown}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return torch.device("cuda", index) if index is not None else torch.device("cuda")


def resolve_precision(requested: str, device: "torch.device", for_training: bool = True) -> Precision:
    import torch

    requested = (requested or "auto").lower()
    if requested not in PRECISIONS:
        raise UserError(f"unknown --precision {requested!r}: use one of {', '.join(PRECISIONS)}")
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        cc = f"{major}.{minor}"
        if requested == "auto":
            requested = "bf16" if major >= 8 else "fp16" if major >= 7 else "fp32"
        if requested == "bf16" and major < 8:
            raise UserError(f"--precision bf16 needs compute capability >= 8.0 but {torch.cuda.get_device_name(device)} has {cc} (bf16 is emulated and slow there): use --precision fp16 or auto")
        if requested == "fp16" and major < 6:
            raise UserError(f"--precision fp16 needs compute capability >= 6.0, this GPU has {cc}: use --precision fp32")
        tf32 = major >= 8 and requested in ("bf16", "fp32")
        if requested == "fp32":
            return Precision("fp32", None, False, tf32)
        dtype = torch.bfloat16 if requested == "bf16" else torch.float16
        return Precision(requested, dtype, requested == "fp16" and for_training, tf32)
    # CPU
    if requested == "auto":  # training only: inference (for_training=False) keeps fp32 outputs unless asked
        requested = "bf16" if for_training and cpu_has_bf16() else "fp32"
    if requested == "fp32":
        return FP32
    if requested == "fp16":
        raise UserError("--precision fp16 is not supported on the CPU (no fast fp16 kernels): use --precision bf16 on a CPU with AVX-512 BF16 or AMX, or fp32")
    if not cpu_has_bf16():
        raise UserError("--precision bf16 on this CPU would be emulated and slow (no AVX-512 BF16 or AMX): use --precision fp32")
    return Precision("bf16", torch.bfloat16, False, False)


def apply_precision_flags(precision: Precision) -> None:
    """Process-wide switches a precision implies (TF32 matmuls on Ampere and newer)."""
    import torch

    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = precision.tf32
        torch.backends.cudnn.allow_tf32 = precision.tf32


def machine_report(device: str = "auto", precision: str = "auto") -> dict:
    """Everything `acceltune doctor` prints: what the machine has and what a run would use."""
    import importlib.metadata as md

    import torch

    from acceltune.extras import installed_extras

    versions = {}
    for pkg in ("torch", "transformers", "accelerate", "datasets", "onnxruntime", "onnx", "tensorrt", "fastapi"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append({
                "index": i,
                "name": props.name,
                "compute_capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1),
                "bf16": props.major >= 8,
            })
    flags = cpu_flags()
    features = ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"]
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": {"model": cpu_model_name(), "cores": usable_cpu_count(), "torch_threads": torch.get_num_threads(),
                "features": {f: f in flags for f in features}},
        "cuda": {"available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda, "devices": gpus},
        "libraries": versions,
        "extras": installed_extras(),
        "run_would_use": {"device": str(dev), "precision": prec.name, "loss_scaling": prec.loss_scaling, "tf32": prec.tf32},
    }
