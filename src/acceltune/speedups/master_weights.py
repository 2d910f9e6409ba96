"""bf16 weight copies written by the optimizer, for bf16 training on the CPU.

Under autocast every step casts each Linear weight to bf16 for the forward pass and each bf16 weight
gradient back to fp32 for the optimizer; clipping then reads and rescales those fp32 gradients and
AdamW reads them once more. On the 2-core benchmark machine that weight-side traffic was a quarter
of a MiniLM step. Here each trained nn.Linear computes with a bf16 copy of its fp32 weight; backward
leaves bf16 gradients on the copies; one numba kernel per weight applies AdamW to the fp32 weight
(still the parameter: state dicts, checkpoints and saved models do not change) straight from the
bf16 gradient, folds in the clipping factor, and writes the new bf16 copy in the same pass. The
arithmetic is autocast's (bf16 weights and gradients, fp32 update), so results match it to rounding.
Query, key and value of an attention block share one copy and run as one matmul (`FusedProjections`).

Single-process CPU bf16 training without gradient accumulation only: elsewhere (GPUs, DDP, where bf16
gradients would be all-reduced or summed in bf16) the loop keeps autocast. Without numba, likewise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_KERNELS = None
"""The compiled kernels, shared by every model in the process: they are pure functions of their arrays
(all per-model state lives in each model's Bf16CopyLinear modules and its Bf16CopyAdamW)."""


def kernels():
    """The compiled numba kernels (cached on disk after the first compilation), or None without numba."""
    global _KERNELS
    if _KERNELS is None:
        try:
            from acceltune.speedups import kernels as bf16_kernels

            bf16_kernels.warm_up()
            _KERNELS = bf16_kernels
        except Exception:  # no numba wheel for this platform, or LLVM refused: autocast it is
            _KERNELS = False
    return _KERNELS or None


PROJECTION_TRIPLES = (("query", "key", "value"), ("q_lin", "k_lin", "v_lin"), ("q_proj", "k_proj", "v_proj"))
"""Sibling Linear names of self-attention projections (BERT/RoBERTa/ELECTRA/ALBERT, DistilBERT, others)."""


class Bf16CopyLinear(nn.Linear):
    """nn.Linear whose training forward uses a bf16 copy of its weight, kept equal to bf16(weight).

    The copy is its own leaf tensor, or rows of a `FusedProjections` leaf shared with sibling
    projections of the same input (one matmul for query, key and value)."""

    weight_bf16: torch.Tensor | None
    weight_bf16_version: int
    group: "FusedProjections | None"

    def copy_tensor(self) -> torch.Tensor:
        """The bf16 copy (detached; rows of the group's copy when grouped)."""
        return self.group.rows(self, self.group.copy.detach()) if self.group else self.weight_bf16.detach()

    def copy_leaf(self) -> torch.Tensor:
        """The autograd leaf that receives this weight's bf16 gradient (shared within a group)."""
        return self.group.copy if self.group else self.weight_bf16

    def copy_grad(self) -> torch.Tensor | None:
        grad = self.copy_leaf().grad
        if grad is None or not self.group:
            return grad
        return self.group.rows(self, grad)

    def refresh_copy_if_stale(self) -> None:
        """Re-derive the copy after the fp32 weight changed outside the optimizer (load_state_dict bumps
        its version; the optimizer's numpy writes do not)."""
        if self.weight._version == self.weight_bf16_version:
            return
        with torch.no_grad():
            if self.group:
                self.copy_tensor().copy_(self.weight)
            else:
                self.weight_bf16 = self.weight.detach().to(torch.bfloat16).requires_grad_(True)
        self.weight_bf16_version = self.weight._version

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return super().forward(x)  # evaluation: the fp32 weight, cast by autocast as usual
        if self.group:
            return self.group.output(self, x)
        self.refresh_copy_if_stale()
        return F.linear(x, self.weight_bf16, self.bias)


class FusedProjections:
    """Query, key and value of one attention block as one matmul over one bf16 copy (measured ~0.7 ms
    less per MiniLM layer and step than three: one input cast, one wider GEMM, one input-gradient GEMM).

    The first member called with an input computes all three outputs; a sibling called with the same
    tensor object takes its share. A sibling called with another input (cross-attention) computes
    its own rows alone, so the result is always what three separate Linears would give."""

    def __init__(self, members: list[Bf16CopyLinear]):
        self.members = members
        self.sizes = [m.out_features for m in members]
        self.offsets = [sum(self.sizes[:i]) for i in range(len(members))]
        with torch.no_grad():
            self.copy = torch.cat([m.weight.detach() for m in members]).to(torch.bfloat16).requires_grad_(True)
        self._input: torch.Tensor | None = None
        self._outputs: list = []

    def rows(self, member: Bf16CopyLinear, t: torch.Tensor) -> torch.Tensor:
        i = self.members.index(member)
        return t[self.offsets[i]:self.offsets[i] + self.sizes[i]]

    def output(self, member: Bf16CopyLinear, x: torch.Tensor) -> torch.Tensor:
        i = self.members.index(member)
        if x is not self._input or self._outputs[i] is None:
            for m in self.members:  # all rows current before the shared copy is used (it is saved for backward)
                m.refresh_copy_if_stale()
            if i != 0:  # not the first projection of this input: compute only this one
                return F.linear(x, self.rows(member, self.copy), member.bias)
            bias = torch.cat([m.bias for m in self.members]) if member.bias is not None else None
            self._input, self._outputs = x, list(F.linear(x, self.copy, bias).split(self.sizes, dim=-1))
        out, self._outputs[i] = self._outputs[i], None
        if all(o is None for o in self._outputs):
            self._input = None  # nothing held between steps
        return out


def use_bf16_weight_copies(model: nn.Module, fuse_projections: bool = True) -> dict[nn.Parameter, Bf16CopyLinear]:
    """Turn every trained nn.Linear (weight used once) into a Bf16CopyLinear, query/key/value siblings
    sharing one copy (`fuse_projections`); returns weight -> module."""
    uses: dict[int, int] = {}
    for m in model.modules():
        if type(m) is nn.Linear:
            uses[id(m.weight)] = uses.get(id(m.weight), 0) + 1
    copies = {}
    for m in model.modules():
        if (type(m) is nn.Linear and m.weight.requires_grad and m.weight.dtype == torch.float32
                and m.weight.is_contiguous() and uses[id(m.weight)] == 1):
            m.__class__ = Bf16CopyLinear  # same parameters, same state dict keys
            m.group, m.weight_bf16_version = None, -1  # no copy yet: versions start at 0
            m.refresh_copy_if_stale()
            copies[m.weight] = m
    for parent in model.modules() if fuse_projections else ():
        for names in PROJECTION_TRIPLES:
            members = [getattr(parent, n, None) for n in names]
            if (all(isinstance(m, Bf16CopyLinear) for m in members) and len({m.in_features for m in members}) == 1
                    and len({m.bias is None for m in members}) == 1):
                group = FusedProjections(members)
                for m in members:
                    m.group, m.weight_bf16 = group, None
    return copies


def _flat(t: torch.Tensor, dtype: torch.dtype | None = None):
    """A 1-D numpy view of t's memory (the kernels write through it, so no contiguous copy)."""
    t = t.detach()
    assert t.is_contiguous(), "bf16 weight copies need contiguous tensors"
    return (t.view(dtype) if dtype is not None else t).view(-1).numpy()


class Bf16CopyAdamW(torch.optim.AdamW):
    """AdamW (torch's, for every parameter without a bf16 copy) plus the fused numba update for those with one.

    The state per parameter is torch AdamW's (fp32 exp_avg, exp_avg_sq, step), so checkpoints load
    into either optimizer. Call `clip_grad_norm_` instead of torch's: the bf16 gradients are read in
    fp32 and the clipping factor is applied inside the update, not by rewriting the gradients.
    Contract: `clip_grad_norm_` before each `step` that should be clipped (`step` uses the factor
    of the last clip and resets it to 1); acceltune.speedups.prepare's ``clip`` is that call.
    """

    def __init__(self, params, copies: dict[nn.Parameter, Bf16CopyLinear], **kwargs):
        if kwargs.get("amsgrad") or kwargs.get("maximize"):
            raise ValueError("Bf16CopyAdamW implements plain AdamW only (no amsgrad, no maximize)")
        super().__init__(params, **kwargs)
        self.copies = copies
        self._clip_factor = 1.0
        self._views: dict[nn.Parameter, tuple] = {}

    def _arrays(self, p, m: Bf16CopyLinear, state: dict) -> tuple:
        """numpy views of the copy, weight and moments, kept while the same tensors are in place
        (a loaded state dict or a refreshed copy brings new ones)."""
        tensors = (m.copy_tensor(), state["exp_avg"], state["exp_avg_sq"], p)
        key = tuple(t.data_ptr() for t in tensors)
        cached = self._views.get(p)
        if cached is None or cached[0] != key:
            views = (_flat(tensors[0], torch.uint16), _flat(p), _flat(state["exp_avg"]), _flat(state["exp_avg_sq"]))
            # The tensors ride along so that their memory, hence their addresses, cannot be reused meanwhile.
            cached = self._views[p] = (key, views, tensors)
        return cached[1]

    def _copy_grads(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        return [(p, g) for p, g in ((p, m.copy_grad()) for p, m in self.copies.items()) if g is not None]

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        for leaf in {id(m.copy_leaf()): m.copy_leaf() for m in self.copies.values()}.values():  # a group's leaf once
            if set_to_none:
                leaf.grad = None
            elif leaf.grad is not None:
                leaf.grad.zero_()

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """torch.nn.utils.clip_grad_norm_ over all gradients (bf16 copies included); returns the total norm."""
        k = kernels()
        squares = sum(k.sum_of_squares(_flat(g.contiguous(), torch.uint16)) for _, g in self._copy_grads())
        others = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if others:
            squares += float(torch.stack(torch._foreach_norm(others)).square().sum())
        norm = squares ** 0.5
        self._clip_factor = min(1.0, max_norm / (norm + 1e-6))
        if others and self._clip_factor < 1.0:
            torch._foreach_mul_(others, self._clip_factor)
        return torch.tensor(norm)

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("Bf16CopyAdamW.step takes no closure")
        k = kernels()
        grads = dict(self._copy_grads())
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr = float(group["lr"])
            for p in group["params"]:
                grad = grads.get(p)
                if grad is None:
                    continue
                m = self.copies[p]
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = float(state["step"])
                k.adamw_update(*self._arrays(p, m, state), _flat(grad.contiguous(), torch.uint16), self._clip_factor,
                               lr, beta1, beta2, group["eps"], group["weight_decay"], 1.0 - beta1 ** t, (1.0 - beta2 ** t) ** 0.5)
                # numpy wrote p in place, which bumps no version counter: the copy is current. (object.__setattr__:
                # nn.Module's would search its parameter and buffer tables, 38 times a step.)
                object.__setattr__(m, "weight_bf16_version", p._version)
        self._clip_factor = 1.0
        return super().step()  # parameters without a copy (their grads were scaled by clip_grad_norm_)
