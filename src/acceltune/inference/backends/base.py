"""The one small interface every inference backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Backend(ABC):
    """Turns a tokenized, padded batch into logits.

    ``features`` holds int64 arrays of shape (batch, seq): ``input_ids``, ``attention_mask`` and,
    when the model uses them, ``token_type_ids``. The result is a float32 array (batch, labels).
    """

    name: str = "base"
    #: Names of the inputs the model takes, in the tokenizer's naming.
    input_names: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")
    #: Pad sequences to a multiple of this (8 on GPUs for tensor cores, 1 on CPU).
    pad_to_multiple_of: int | None = None

    @abstractmethod
    def logits(self, features: dict[str, np.ndarray]) -> np.ndarray: ...

    def describe(self) -> dict:
        """What /v1/model and reports show about this backend."""
        return {"backend": self.name}
