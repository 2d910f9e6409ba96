"""CPU training speed-ups behind one call: `prepare` → `Speedups`.

The training loop calls `prepare` once, after the model is built and before Accelerate wraps it, and
then uses what it returns the same way on every device: ``optimizer``, ``clip(model, max_norm)``
before each ``optimizer.step()``, ``before_micro_batch(epoch, batch)`` before each forward pass, and
``after_training()``. Where a speed-up does not apply (GPUs, several processes, a flag off, numba
missing) the parts are plain: torch's fused AdamW, Accelerate's clipping, no-op hooks.

What each speed-up may touch, and the contracts the loop keeps:

- numpy dropout (`dropout`, CPU only): swaps the model's nn.Dropout modules in place and, where the
  model allows it, its attention implementation; masks come from a generator owned by this model,
  reseeded by ``before_micro_batch`` (no generator state to checkpoint; another model in the process
  keeps its own).
- bf16 weight copies (`master_weights`, one CPU process, bf16, no accumulation, no compile): changes
  the class of trained nn.Linear modules in place (same parameters, same state dict) and fuses q/k/v
  siblings, which relies on the three being called in turn with the same input tensor (checked per
  call: any other order computes each projection alone). The optimizer must be the one returned here
  and ``clip`` must run before every ``step`` (the clipping factor is applied inside the update).
- torch.compile (`--compile`): replaces the model by its compiled wrapper; excludes the two above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from acceltune.cpu import trim_heap


@dataclass
class Speedups:
    model: torch.nn.Module
    """The model to train (the same object, changed in place, unless compiled)."""
    optimizer: torch.optim.Optimizer
    clip: Callable[[torch.nn.Module, float], "torch.Tensor | None"]
    """clip(prepared model, max_norm) -> the total gradient norm (None when max_norm <= 0). Before each step."""
    before_micro_batch: Callable[[int, int], None] = lambda epoch, batch: None
    """Called with (epoch, batch within the epoch) before each forward pass."""
    after_training: Callable[[], None] = trim_heap
    """The activations' high-water mark would otherwise stay resident under evaluation and the report."""
    names: list[str] = field(default_factory=list)
    """The speed-ups in use, for the run's first line."""


def uses_bf16_weight_copies(args, precision, accelerator) -> bool:
    """Only where bf16 gradients are exactly autocast's: one CPU process, no accumulation (sums of bf16
    gradients, or a bf16 all-reduce, would round where autocast sums in fp32)."""
    from acceltune.speedups import master_weights

    return (args.bf16_weight_copies and not args.compile and precision.name == "bf16" and accelerator.device.type == "cpu"
            and accelerator.num_processes == 1 and args.grad_accumulation == 1 and master_weights.kernels() is not None)


def prepare(model: torch.nn.Module, param_groups: list[dict], args, precision, accelerator) -> Speedups:
    """Apply the speed-ups that fit this run to ``model`` and build its optimizer (see the module docstring)."""
    names: list[str] = []
    before_micro_batch = Speedups.before_micro_batch
    if args.compile:
        model = torch.compile(model, dynamic=True)
        names.append("torch.compile")
    elif args.numpy_dropout and accelerator.device.type == "cpu":
        from acceltune.speedups import dropout

        masks = dropout.use_numpy_dropout(model)
        rank = accelerator.process_index

        def before_micro_batch(epoch: int, batch: int) -> None:
            masks.reseed(args.seed, rank, epoch, batch)

    if uses_bf16_weight_copies(args, precision, accelerator):
        from acceltune.speedups import master_weights

        copies = master_weights.use_bf16_weight_copies(model)
        # fused AdamW for the rest, the numba update for the weights with bf16 copies
        optimizer = master_weights.Bf16CopyAdamW(param_groups, copies, lr=args.learning_rate, fused=True)
        names.append("bf16 weight copies")

        def clip(prepared_model, max_norm: float):
            return optimizer.clip_grad_norm_(max_norm) if max_norm > 0 else None
    else:
        optimizer = _adamw(param_groups, args.learning_rate, accelerator.device)

        def clip(prepared_model, max_norm: float):
            return accelerator.clip_grad_norm_(prepared_model.parameters(), max_norm) if max_norm > 0 else None

    return Speedups(model, optimizer, clip, before_micro_batch, trim_heap, names)


def _adamw(param_groups: list[dict], lr: float, device: torch.device) -> torch.optim.Optimizer:
    try:  # fused AdamW: one kernel over all parameters (measured faster than foreach, see docs/benchmarks.md)
        return torch.optim.AdamW(param_groups, lr=lr, fused=device.type in ("cpu", "cuda"))
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(param_groups, lr=lr, foreach=True)
