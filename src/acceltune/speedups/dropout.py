"""Dropout masks drawn by numpy, for CPU training.

torch's CPU dropout draws its mask with `bernoulli_` on one thread at ~5 ns per element: 16% of a
MiniLM training step on the 2-core benchmark machine. numpy's PCG64 gives 16-bit draws at ~0.4 ns
each (raw 64-bit outputs split in four), so each `nn.Dropout` becomes a `NumpyDropout` and
attention-probability dropout goes through an eager attention function that uses it (measured 1.11x
faster steps, docs/benchmarks.md).
The keep probability is resolved to 1/65536 (16-bit thresholds). GPUs keep torch's dropout.

Masks depend only on the key the training loop passes to `reseed` before each micro-batch (seed, rank,
epoch, batch within the epoch): they are reproducible, and an exactly resumed run draws the same masks
with no generator state to checkpoint.

Each patched model owns its `MaskSource` (returned by `use_numpy_dropout`; its dropout modules and its
attention modules hold it), so two models in one process draw independent, reproducible masks. The
attention function registered with transformers is stateless: it reads the source off the module.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn

ATTENTION = "acceltune_cpu"
"""Attention-implementation name registered with transformers for models whose attention dropout we replace."""


class MaskSource:
    """One model's mask generator."""

    def __init__(self):
        self.rng = np.random.default_rng(0)

    def reseed(self, *key: int) -> None:
        self.rng = np.random.default_rng([int(k) for k in key])

    def keep(self, shape: torch.Size, p: float) -> np.ndarray:
        """A flat boolean mask, True with probability 1 - p."""
        n = math.prod(shape)
        # The raw 64-bit outputs seen as four 16-bit draws each: 5x faster than Generator.bytes here.
        bits = self.rng.bit_generator.random_raw((n + 3) // 4).view(np.uint16)[:n]
        return bits >= round(p * 65536)

    def multiplier(self, shape: torch.Size, p: float, dtype: torch.dtype) -> torch.Tensor:
        """0 where dropped, 1/(1-p) (rounded to dtype) where kept: one torch multiply applies it."""
        keep = self.keep(shape, p)
        if dtype == torch.bfloat16:  # numpy has no bf16: build its bit patterns as uint16 and view them
            mult = torch.from_numpy(keep.view(np.uint8).astype(np.uint16) * _bf16_bits(1.0 / (1.0 - p))).view(torch.bfloat16)
        else:
            mult = torch.from_numpy(keep * np.float32(1.0 / (1.0 - p))).to(dtype)
        return mult.view(shape)


@functools.lru_cache(maxsize=16)
def _bf16_bits(value: float) -> np.uint16:
    """value rounded to bf16, as its 16-bit pattern (one torch call per dropout rate, not per mask)."""
    return np.uint16(torch.tensor(value, dtype=torch.bfloat16).view(torch.uint16).item())


MASK_ATTRIBUTE = "_numpy_dropout_masks"
"""Where `use_numpy_dropout` leaves a model's MaskSource on each of its modules (read by `attention`)."""


def numpy_dropout(x: torch.Tensor, p: float, masks: MaskSource, training: bool = True) -> torch.Tensor:
    if not training or p == 0:
        return x
    if p >= 1:
        return torch.zeros_like(x)
    return x * masks.multiplier(x.shape, p, x.dtype)


class NumpyDropout(nn.Module):
    """nn.Dropout with masks from its model's MaskSource."""

    def __init__(self, p: float, masks: MaskSource):
        super().__init__()
        self.p = p
        self.masks = masks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return numpy_dropout(x, self.p, self.masks, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def attention(module, query, key, value, attention_mask, scaling=None, dropout: float = 0.0, **kwargs):
    """transformers' eager attention with numpy dropout on the probabilities; without dropout
    (evaluation, or p = 0) it is transformers' SDPA attention, which reads the same additive mask."""
    if dropout == 0 or not module.training:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=scaling, **kwargs)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask[:, :, :, : key.shape[-2]]
    weights = numpy_dropout(nn.functional.softmax(weights, dim=-1), dropout, masks=getattr(module, MASK_ATTRIBUTE))
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def use_numpy_dropout(model: nn.Module) -> MaskSource:
    """Swap every nn.Dropout for NumpyDropout (in place) and route attention through `attention` where
    the model allows it; returns the model's own MaskSource (reseed it before each micro-batch).
    The state dict and saved config do not change."""
    masks = MaskSource()
    for parent in list(model.modules()):
        object.__setattr__(parent, MASK_ATTRIBUTE, masks)  # plain attribute: not a submodule, not in the state dict
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, NumpyDropout(child.p, masks))
    config = getattr(model, "config", None)
    # Only models built on transformers' attention interface route their attention through `attention`
    # (DeBERTa, MPNet ... keep torch's dropout on the attention probabilities; their nn.Dropout are swapped).
    can_set = getattr(model, "_can_set_attn_implementation", lambda: False)
    if config is not None and getattr(config, "_attn_implementation", None) in ("sdpa", "eager") and can_set():
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

        # Process-wide registrations, but stateless: the same functions for every model (masks come off the module).
        AttentionInterface.register(ATTENTION, attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, eager_mask)  # additive float mask: both paths read it
        try:
            model.set_attn_implementation(ATTENTION)
        except (ValueError, NotImplementedError, AttributeError, KeyError, TypeError):
            pass  # a model without the attention interface keeps torch's dropout on its attention probabilities
    return masks
