"""PyTorch backend: the trained transformers model, in inference mode, returning logits and pooled features."""

from __future__ import annotations

import inspect
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from acceltune.inference.backends.base import Backend, Outputs
from acceltune.inference.heads import WithFeatures
from acceltune.hardware import resolve_device, resolve_precision


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model_dir: str | Path, device: str = "auto", precision: str = "auto", threads: int | None = None):
        from transformers import AutoModelForSequenceClassification

        self.device = resolve_device(device)
        if threads and self.device.type == "cpu":
            torch.set_num_threads(threads)  # process-wide: torch has one intra-op pool
        self.precision = resolve_precision(precision, self.device, for_training=False)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        forward_args = inspect.signature(model.forward).parameters
        self.model = WithFeatures(model).to(self.device).eval()
        self.has_features = self.model.head is not None
        self.feature_size = self.model.head.in_features if self.has_features else None
        self.input_names = tuple(n for n in ("input_ids", "attention_mask", "token_type_ids") if n in forward_args)
        self.pad_to_multiple_of = 8 if self.device.type == "cuda" else None
        self._autocast = (
            torch.autocast(self.device.type, dtype=self.precision.autocast_dtype)
            if self.precision.autocast_dtype is not None
            else nullcontext()
        )

    @torch.inference_mode()
    def forward(self, batch: dict[str, np.ndarray]) -> Outputs:
        inputs = {
            k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device, non_blocking=True)
            for k, v in batch.items()
            if k in self.input_names
        }
        with self._autocast:
            logits, features = self.model(**inputs)
        return Outputs(logits.float().cpu().numpy(), None if features is None else features.float().cpu().numpy())

    def describe(self) -> dict:
        return {"backend": self.name, "device": str(self.device), "precision": self.precision.name}
