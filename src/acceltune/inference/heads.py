"""The classifier head and the pooled features it reads, for torch inference and the ONNX export.

A transformers ``*ForSequenceClassification`` model ends in one ``nn.Linear`` to the labels (BERT's
``classifier``, RoBERTa's ``classifier.out_proj``, GPT-2's ``score``). Its input, at the position the
model pools (BERT: the pooler output; RoBERTa: the dense+tanh of [CLS]; GPT-2: the last non-pad
token), is the text's pooled feature vector: what out-of-scope distances and retrieval use.

`WithFeatures` swaps that Linear for an Identity, so the model itself pools and returns the features
in place of the logits, then applies the Linear: one forward pass gives both, and the pooling rule
stays the model's own (the Linear commutes with picking a position). Plain module calls, so
``torch.onnx.export`` traces it into a graph with two outputs.
"""

from __future__ import annotations

import torch
from torch import nn


def find_head(model: nn.Module) -> str | None:
    """Dotted name of the Linear that maps features to logits, or None when there is not exactly one."""
    num_labels = int(model.config.num_labels)
    prefix = getattr(model, "base_model_prefix", "") or ""
    found = [name for name, m in model.named_modules()
             if isinstance(m, nn.Linear) and m.out_features == num_labels and name
             and not (prefix and (name == prefix or name.startswith(prefix + ".")))]
    return found[0] if len(found) == 1 else None


class WithFeatures(nn.Module):
    """``forward(**inputs) -> (logits, features)``; features is None for an architecture without a
    recognisable head (then the model runs unchanged).

    Takes the model over: its head Linear is replaced in place, so use this module, not the model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        name = find_head(model)
        self.head: nn.Module | None = None
        if name is not None:
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            self.head = getattr(parent, attr)
            setattr(parent, attr, nn.Identity())
        self.model = model
        self.config = model.config

    def forward(self, **inputs) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.model(**inputs).logits
        if self.head is None:
            return out, None
        return self.head(out), out
