"""PyTorch backend: the trained transformers model, in inference mode."""

from __future__ import annotations

import inspect
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from acceltune.inference.backends.base import Backend
from acceltune.hardware import resolve_device, resolve_precision


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model_dir: str | Path, device: str = "auto", precision: str = "auto"):
        from transformers import AutoModelForSequenceClassification

        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device, for_training=False)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        self.model.to(self.device).eval()
        forward_args = inspect.signature(self.model.forward).parameters
        self.input_names = tuple(n for n in ("input_ids", "attention_mask", "token_type_ids") if n in forward_args)
        self.pad_to_multiple_of = 8 if self.device.type == "cuda" else None
        self._autocast = (
            torch.autocast(self.device.type, dtype=self.precision.autocast_dtype)
            if self.precision.autocast_dtype is not None
            else nullcontext()
        )

    @torch.inference_mode()
    def logits(self, features: dict[str, np.ndarray]) -> np.ndarray:
        inputs = {
            k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device, non_blocking=True)
            for k, v in features.items()
            if k in self.input_names
        }
        with self._autocast:
            out = self.model(**inputs).logits
        return out.float().cpu().numpy()

    def describe(self) -> dict:
        return {"backend": self.name, "device": str(self.device), "precision": self.precision.name}
