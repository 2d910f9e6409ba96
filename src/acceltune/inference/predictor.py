"""Batch inference over any backend: labels, scores and pooled features for lists of texts.

Used by `acceltune predict`, `acceltune evaluate`, the server and the export's parity check, so all
give the same answers; the batching itself is `BatchRunner`'s. Results come back in input order
whatever the batch composition.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from acceltune.errors import UserError
from acceltune.inference.backends import load_backend
from acceltune.inference.backends.base import Outputs
from acceltune.inference.batches import BatchRunner, Encoded, default_batch_tokens
from acceltune.metrics import probabilities
from acceltune.modeldir import ModelInfo


@dataclass
class Scores:
    """Class probabilities (inputs, labels) in input order, which inputs were truncated, and the token count;
    with an out-of-scope rule, which inputs are out of scope and their scores (else None)."""

    probabilities: np.ndarray
    truncated: list[bool]
    tokens: int
    oos: np.ndarray | None = None
    oos_scores: np.ndarray | None = None


class Predictor:
    """A model directory (trained or exported) behind one backend.

    ``max_batch_tokens``: padded tokens per backend call (default: inference.batches.CPU_BATCH_TOKENS on
    the CPU, GPU_BATCH_TOKENS on a GPU). ``threads``: ONNX Runtime intra-op threads on the CPU (default:
    every usable core).
    """

    def __init__(self, model_dir: str | Path, backend: str = "auto", device: str = "auto", precision: str = "auto",
                 max_batch_tokens: int | None = None, max_batch_size: int = 256, threads: int | None = None):
        from transformers import AutoTokenizer

        self.model_dir = Path(model_dir)
        self.info = ModelInfo.load(self.model_dir)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        except (OSError, ValueError) as e:
            raise UserError(f"cannot load the tokenizer from {self.model_dir} ({e.__class__.__name__}): the directory must hold tokenizer files as written by 'acceltune train'") from None
        self.backend = load_backend(self.model_dir, self.info, backend, device, precision, threads=threads)
        self.runner = BatchRunner(self.tokenizer, self.info.max_length, self.backend.input_names,
                                  max_batch_tokens or default_batch_tokens(self.backend), max_batch_size,
                                  self.backend.pad_to_multiple_of)
        self.oos_rule = None
        """The model's out-of-scope rule (acceltune.oos.rule.OOSRule), or None."""
        if self.info.oos:
            from acceltune.oos.rule import OOSRule

            self.oos_rule = OOSRule.from_info(self.model_dir, self.info.oos)
            if self.oos_rule.needs_features and not getattr(self.backend, "has_features", False):
                raise UserError(f"{self.model_dir}: its out-of-scope rule ({self.oos_rule.score}) reads pooled features, which "
                                f"this export does not give: run 'acceltune export' again from the trained model directory")

    @property
    def labels(self) -> list[str]:
        return self.info.labels

    @property
    def max_batch_tokens(self) -> int:
        return self.runner.max_batch_tokens

    @max_batch_tokens.setter
    def max_batch_tokens(self, value: int) -> None:
        self.runner.max_batch_tokens = value

    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> Encoded:
        """Token ids for `self.runner.run`; a pair model needs the pairs."""
        if self.info.text_pair and pairs is None:
            raise UserError("this model classifies text pairs: give the second text too (--text-pair-column, or 'pair' in requests)")
        return self.runner.encode(texts, pairs)

    # ------------------------------------------------------------------------------------ outputs

    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> tuple[np.ndarray, list[bool]]:
        """Logits in input order, and which inputs were truncated."""
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32), []
        encoded = self.encode(texts, pairs)
        return self.runner.run(encoded, self.backend.logits), encoded.truncated

    def outputs(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> tuple[Outputs, list[bool]]:
        """Logits and pooled features (None for an export without them) in input order, and which inputs were truncated."""
        if len(texts) == 0:
            width = self.backend.feature_size if getattr(self.backend, "has_features", False) else None
            return Outputs(np.zeros((0, len(self.labels)), np.float32), None if width is None else np.zeros((0, width), np.float32)), []
        encoded = self.encode(texts, pairs)
        logits, features = self.runner.run(encoded, self.backend.forward)
        return Outputs(logits, features), encoded.truncated

    def embed(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        """The pooled features the classifier head reads, (inputs, hidden) float32, in input order."""
        if not getattr(self.backend, "has_features", False):
            raise UserError(f"{self.model_dir} gives no pooled features: it was exported before exports carried them "
                            f"(or its architecture has no single head): run 'acceltune export' again from the trained model directory")
        return self.outputs(texts, pairs)[0].features

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return probabilities(logits, self.info.multi_label)

    def oos(self, outputs: Outputs) -> tuple[np.ndarray, np.ndarray]:
        """The out-of-scope decisions and scores of `outputs` (from `self.outputs`: no second forward pass):
        (flags: bool (inputs,), scores: float64 (inputs,)); a flag is True when its score is above the
        rule's threshold or the best class is the out-of-scope label. UserError for a model without a rule."""
        if self.oos_rule is None:
            raise UserError(f"{self.model_dir} has no out-of-scope rule: train it with out-of-scope examples "
                            f"(--oos-label) or an --oos-goal")
        return self.oos_rule.apply(outputs)

    def scores(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> Scores:
        """Probabilities, truncation flags and tokens of a list of inputs (and the out-of-scope decisions when the
        model has a rule): the server's batch function."""
        if len(texts) == 0:
            empty = np.zeros(0, bool) if self.oos_rule is not None else None
            return Scores(np.zeros((0, len(self.labels)), dtype=np.float32), [], 0, empty,
                          None if empty is None else np.zeros(0))
        encoded = self.encode(texts, pairs)
        if self.oos_rule is None:
            logits = self.runner.run(encoded, self.backend.logits)
            return Scores(self.probabilities(logits), encoded.truncated, int(encoded.lengths.sum()))
        outputs = (Outputs(*self.runner.run(encoded, self.backend.forward)) if self.oos_rule.needs_features
                   else Outputs(self.runner.run(encoded, self.backend.logits), None))
        flags, oos_scores = self.oos(outputs)
        return Scores(self.probabilities(outputs.logits), encoded.truncated, int(encoded.lengths.sum()), flags, oos_scores)

    # ------------------------------------------------------------------------------------ results

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None, top_k: int = 1) -> list[dict]:
        """One result per input: label, score, top_k [{label, score}], truncated; multi-label adds labels; a model
        with an out-of-scope rule adds oos (bool) and oos_score (float)."""
        scored = self.scores(texts, pairs)
        return self.results(scored.probabilities, scored.truncated, top_k, scored.oos, scored.oos_scores)

    def results(self, probs: np.ndarray, truncated: Sequence[bool], top_k: int = 1,
                oos: np.ndarray | None = None, oos_scores: np.ndarray | None = None) -> list[dict]:
        """`format_result` for every row of `probs`, sorted once for all rows (the same dicts, faster); with
        ``oos`` and ``oos_scores`` (`Predictor.oos`), each result adds "oos" and "oos_score"."""
        if len(probs) == 0:
            return []
        k = max(1, min(top_k, len(self.labels)))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(probs, order, axis=1).tolist()
        names = [[self.labels[i] for i in row] for row in order.tolist()]
        out = [{"label": n[0], "score": s[0], "top_k": [{"label": a, "score": b} for a, b in zip(n, s)], "truncated": bool(t)}
               for n, s, t in zip(names, top, truncated)]
        if self.info.multi_label:
            above = probs >= self.info.threshold
            for r, row in zip(out, above):
                r["labels"] = [self.labels[i] for i in np.flatnonzero(row)]
        if oos is not None:
            for r, flag, value in zip(out, oos.tolist(), oos_scores.tolist()):
                r["oos"] = flag
                r["oos_score"] = value
        return out

    def format_result(self, probs: np.ndarray, truncated: bool, top_k: int = 1) -> dict:
        return self.results(probs[None, :], [truncated], top_k)[0]
