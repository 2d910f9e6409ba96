"""The one small interface every inference backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import numpy as np


class Outputs(NamedTuple):
    """What a backend returns for a batch: float32 logits (batch, labels) and the pooled features the
    classifier head reads (batch, hidden), or None where the model has none (an ONNX export made
    before exports carried them)."""

    logits: np.ndarray
    features: np.ndarray | None


class Backend(ABC):
    """Turns a tokenized, padded batch into logits and pooled features.

    A batch holds int64 arrays of shape (batch, seq): ``input_ids``, ``attention_mask`` and,
    when the model uses them, ``token_type_ids``.
    """

    name: str = "base"
    #: Names of the inputs the model takes, in the tokenizer's naming.
    input_names: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")
    #: Pad sequences to a multiple of this (8 on GPUs for tensor cores, 1 on CPU).
    pad_to_multiple_of: int | None = None
    #: Whether `forward` returns pooled features, and their width.
    has_features: bool = True
    feature_size: int | None = None

    @abstractmethod
    def forward(self, batch: dict[str, np.ndarray]) -> Outputs: ...

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self.forward(batch).logits

    def describe(self) -> dict:
        """What /v1/model and reports show about this backend."""
        return {"backend": self.name}
