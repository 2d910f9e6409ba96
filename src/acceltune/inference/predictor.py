"""Batch inference over any backend: tokenize in batches, sort by length, batch by token budget.

Used by `acceltune predict`, `acceltune evaluate` and the server, so all three give the same
answers. Results come back in input order whatever the batch composition.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from acceltune.inference.backends import load_backend
from acceltune.batching import eval_batches
from acceltune.metrics import probabilities
from acceltune.errors import UserError
from acceltune.modeldir import ModelInfo


@dataclass
class Encoded:
    """Token ids per input (unpadded) and whether each was truncated."""

    features: dict[str, list[list[int]]]
    truncated: list[bool]

    @property
    def lengths(self) -> list[int]:
        # Cached: pad() and batches() ask for it per batch (recomputing it made padding O(n^2)).
        cached = self.__dict__.get("_lengths")
        if cached is None or len(cached) != len(self.features["input_ids"]):
            cached = self.__dict__["_lengths"] = [len(ids) for ids in self.features["input_ids"]]
        return cached


#: Padded tokens per inference batch. On the CPU, per-message cost rises with batch size once the
#: activations outgrow the caches: on the Banking77 test set (2 cores) onnx int8 ran 1,762 seq/s at
#: 512 tokens, 1,726 at 1,024 and 1,302 at 8,192 (fp32: 761 / 730 / 613). GPUs want large batches.
CPU_BATCH_TOKENS = 512
GPU_BATCH_TOKENS = 8192


def default_batch_tokens(backend, cpu_tokens: int = CPU_BATCH_TOKENS) -> int:
    return GPU_BATCH_TOKENS if "cuda" in str(backend.describe().get("device", "cpu")) else cpu_tokens


class Predictor:
    def __init__(self, model_dir: str | Path, backend: str = "auto", device: str = "auto", precision: str = "auto",
                 max_batch_tokens: int | None = None, max_batch_size: int = 256):
        from transformers import AutoTokenizer

        self.model_dir = Path(model_dir)
        self.info = ModelInfo.load(self.model_dir)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        except (OSError, ValueError) as e:
            raise UserError(f"cannot load the tokenizer from {self.model_dir} ({e.__class__.__name__}): the directory must hold tokenizer files as written by 'acceltune train'") from None
        self.backend = load_backend(self.model_dir, self.info, backend, device, precision)
        self.max_batch_tokens = max_batch_tokens or default_batch_tokens(self.backend)
        self.max_batch_size = max_batch_size

    @property
    def labels(self) -> list[str]:
        return self.info.labels

    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> Encoded:
        if self.info.text_pair and pairs is None:
            raise UserError("this model classifies text pairs: give the second text too (--text-pair-column, or 'pair' in requests)")
        max_len = self.info.max_length
        kwargs = {"add_special_tokens": True, "return_attention_mask": False}
        args = (list(texts), list(pairs)) if pairs is not None else (list(texts),)
        enc = self.tokenizer(*args, truncation=False, **kwargs)
        truncated = [len(ids) > max_len for ids in enc["input_ids"]]
        if any(truncated):
            idx = [i for i, t in enumerate(truncated) if t]
            sub = (tuple([a[i] for i in idx] for a in args))
            enc_t = self.tokenizer(*sub, truncation=True, max_length=max_len, **kwargs)
            for key in enc:
                for j, i in enumerate(idx):
                    enc[key][i] = enc_t[key][j]
        features = {k: enc[k] for k in ("input_ids", "token_type_ids") if k in enc}
        return Encoded(features, truncated)

    def batches(self, lengths: Sequence[int]) -> list[np.ndarray]:
        """Index batches, longest first, each within the token budget (padded tokens counted)."""
        return eval_batches(lengths, self.max_batch_tokens, self.max_batch_size)

    def pad(self, encoded: Encoded, idx: np.ndarray) -> dict[str, np.ndarray]:
        all_lengths = encoded.lengths
        lengths = np.fromiter((all_lengths[i] for i in idx), dtype=np.int64, count=len(idx))
        width = int(lengths.max())
        multiple = self.backend.pad_to_multiple_of
        if multiple:
            width = -(-width // multiple) * multiple
        pad_id = self.tokenizer.pad_token_id or 0
        cols = np.arange(width)
        if getattr(self.tokenizer, "padding_side", "right") == "left":
            mask = cols[None, :] >= (width - lengths)[:, None]
        else:
            mask = cols[None, :] < lengths[:, None]
        total = int(lengths.sum())
        # Row-major order of the mask's True cells is the concatenation order of the rows' tokens.
        batch = {"attention_mask": mask.astype(np.int64)}
        for key, fill in (("input_ids", pad_id), ("token_type_ids", 0)):
            if key not in encoded.features:
                continue
            rows = encoded.features[key]
            arr = np.full((len(idx), width), fill, dtype=np.int64)
            arr[mask] = np.fromiter(itertools.chain.from_iterable(rows[i] for i in idx), dtype=np.int64, count=total)
            batch[key] = arr
        return {k: v for k, v in batch.items() if k in self.backend.input_names}

    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> tuple[np.ndarray, list[bool]]:
        """Logits in input order, and which inputs were truncated."""
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32), []
        encoded = self.encode(texts, pairs)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        for idx in self.batches(encoded.lengths):
            out[idx] = self.backend.logits(self.pad(encoded, idx))
        return out, encoded.truncated

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return probabilities(logits, self.info.multi_label)

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None, top_k: int = 1) -> list[dict]:
        """One result per input: label, score, top_k [{label, score}], truncated; multi-label adds labels."""
        logits, truncated = self.logits(texts, pairs)
        probs = self.probabilities(logits)
        return [self.format_result(p, t, top_k) for p, t in zip(probs, truncated)]

    def format_result(self, probs: np.ndarray, truncated: bool, top_k: int = 1) -> dict:
        k = max(1, min(top_k, len(self.labels)))
        order = np.argsort(-probs, kind="stable")[:k]
        result = {
            "label": self.labels[int(order[0])],
            "score": float(probs[order[0]]),
            "top_k": [{"label": self.labels[int(i)], "score": float(probs[i])} for i in order],
            "truncated": bool(truncated),
        }
        if self.info.multi_label:
            result["labels"] = [self.labels[i] for i in np.flatnonzero(probs >= self.info.threshold)]
        return result
