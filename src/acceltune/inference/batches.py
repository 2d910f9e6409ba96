"""The one batching loop of inference: encode → token-budget batches → pad → run → outputs in input order.

`Predictor` (predict, evaluate, embed), the server's batcher and the export's parity check all run
through `BatchRunner`, so they cut, pad and reassemble identically: a text's result does not depend on
which other texts share its batch (up to the backend's numerics).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

#: Padded tokens per backend call on the CPU for throughput (predict, evaluate, export parity). Per-message
#: cost rises with batch size once the activations outgrow the caches: on the Banking77 test set (2 cores)
#: onnx int8 ran 1,762 seq/s at 512 tokens, 1,726 at 1,024 and 1,302 at 8,192 (fp32: 761 / 730 / 613).
CPU_BATCH_TOKENS = 512
#: The server under load wants short calls cut from length-sorted inputs: Banking77 messages, onnx int8,
#: 64 connections: 983 / 1,034 / 948 / 936 / 857 req/s at 64 / 128 / 192 / 256 / 512 padded tokens per
#: call (benchmarks/serve_load.py, docs/benchmarks.md).
SERVE_CPU_BATCH_TOKENS = 128
#: GPUs want large batches.
GPU_BATCH_TOKENS = 8192


def default_batch_tokens(backend, cpu_tokens: int = CPU_BATCH_TOKENS) -> int:
    """The token budget for `backend`'s device: `cpu_tokens` on the CPU (SERVE_CPU_BATCH_TOKENS when serving)."""
    return GPU_BATCH_TOKENS if "cuda" in str(backend.describe().get("device", "cpu")) else cpu_tokens


@dataclass
class Encoded:
    """Every input's token ids end to end (input i is ``input_ids[starts[i]:starts[i] + lengths[i]]``; flat, so
    padding a batch is array indexing, no per-input Python), token types likewise (or None), and whether each
    input was truncated."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray | None
    starts: np.ndarray
    lengths: np.ndarray
    truncated: list[bool]

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def from_lists(cls, ids: list[list[int]], types: list[list[int]] | None, truncated: list[bool]) -> "Encoded":
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        starts = np.zeros(len(ids), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        total = int(lengths.sum())

        def flat(rows):
            return np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=total)

        return cls(flat(ids), None if types is None else flat(types), starts, lengths, truncated)


Run = Callable[[dict[str, np.ndarray]], "np.ndarray | tuple"]


class BatchRunner:
    """Tokenizes texts (or pairs), cuts length-sorted batches within a padded-token budget, pads each and
    hands it to a run function; returns the run function's outputs in input order.

    Encoding goes straight to the fast tokenizer's Rust `encode_batch` (no per-text Python work: about
    3x faster than the transformers call); only inputs longer than ``max_length`` are encoded again
    through the transformers tokenizer, with its truncation rules.
    """

    def __init__(self, tokenizer, max_length: int, input_names: Sequence[str], max_batch_tokens: int,
                 max_batch_size: int = 256, pad_to_multiple_of: int | None = None):
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.input_names = tuple(input_names)
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.pad_to_multiple_of = pad_to_multiple_of
        self.token_types = "token_type_ids" in self.input_names and "token_type_ids" in getattr(tokenizer, "model_input_names", ())
        self.pad_id = tokenizer.pad_token_id or 0
        self.left = getattr(tokenizer, "padding_side", "right") == "left"
        self._rust = _rust_tokenizer(tokenizer)

    # ------------------------------------------------------------------------------------- encode

    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> Encoded:
        texts = list(texts)
        pairs = list(pairs) if pairs is not None else None
        if self._rust is not None:
            encs = self._rust(list(zip(texts, pairs)) if pairs is not None else texts)
            ids = [e.ids for e in encs]
            types = [e.type_ids for e in encs] if self.token_types else None
        else:
            enc = self.tokenizer(*((texts, pairs) if pairs is not None else (texts,)), add_special_tokens=True,
                                 truncation=False, return_attention_mask=False)
            ids, types = enc["input_ids"], (enc.get("token_type_ids") if self.token_types else None)
        long = [i for i, row in enumerate(ids) if len(row) > self.max_length]
        if len(long):
            sub = ([texts[i] for i in long],) + (([pairs[i] for i in long],) if pairs is not None else ())
            enc = self.tokenizer(*sub, add_special_tokens=True, truncation=True, max_length=self.max_length,
                                 return_attention_mask=False)
            for j, i in enumerate(long):
                ids[i] = enc["input_ids"][j]
                if types is not None:
                    types[i] = enc["token_type_ids"][j]
        truncated = [False] * len(ids)
        for i in long:
            truncated[i] = True
        return Encoded.from_lists(ids, types, truncated)

    # ------------------------------------------------------------------------------ batch and pad

    def batches(self, lengths: Sequence[int]) -> list[np.ndarray]:
        """Index batches, longest first, each within the token budget (padded tokens counted)."""
        from acceltune.batching import eval_batches  # here, not above: acceltune.batching imports torch, the server need not

        return eval_batches(lengths, self.max_batch_tokens, self.max_batch_size)

    def pad(self, encoded: Encoded, idx: np.ndarray) -> dict[str, np.ndarray]:
        lengths = encoded.lengths[idx]
        width = int(lengths.max())
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        cols = np.arange(width)
        mask = cols[None, :] >= (width - lengths)[:, None] if self.left else cols[None, :] < lengths[:, None]
        # Where each real token of the batch sits in the flat arrays (row-major over the mask's True cells).
        offsets = cols[None, :] - (width - lengths)[:, None] if self.left else np.broadcast_to(cols, mask.shape)
        source = (encoded.starts[idx][:, None] + offsets)[mask]
        batch = {"attention_mask": mask.astype(np.int64)}
        for key, flat, fill in (("input_ids", encoded.input_ids, self.pad_id), ("token_type_ids", encoded.token_type_ids, 0)):
            if flat is None or key not in self.input_names:
                continue
            arr = np.full((len(idx), width), fill, dtype=np.int64)
            arr[mask] = flat[source]
            batch[key] = arr
        return {k: v for k, v in batch.items() if k in self.input_names}

    # --------------------------------------------------------------------------------------- run

    def run(self, encoded: Encoded, run: Run):
        """``run(batch)`` over every batch; its outputs (an array, or a tuple of arrays or None) in input order."""
        n = len(encoded)
        out: list | None = None
        single = False
        for idx in self.batches(encoded.lengths):
            got = run(self.pad(encoded, idx))
            if out is None:
                single = isinstance(got, np.ndarray)
                got = (got,) if single else tuple(got)
                out = [None if o is None else np.empty((n, *o.shape[1:]), dtype=o.dtype) for o in got]
            elif single:
                got = (got,)
            for dst, o in zip(out, got):
                if dst is not None:
                    dst[idx] = o
        if out is None:
            raise ValueError("run() needs at least one input")
        return out[0] if single else tuple(out)


def _rust_tokenizer(tokenizer):
    """The fast tokenizer's own copy of its Rust tokenizer, without truncation or padding (the transformers
    call sets both per call); None for a slow (Python) tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None:
        return None
    from tokenizers import Tokenizer

    rust = Tokenizer.from_str(backend.to_str())
    rust.no_truncation()
    rust.no_padding()
    encode = getattr(rust, "encode_batch_fast", rust.encode_batch)  # _fast (tokenizers >= 0.20) skips offsets
    return lambda inputs: encode(inputs, add_special_tokens=True)
