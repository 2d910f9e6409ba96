"""From a classifier's probabilities to the index's score: P(positive) - P(negative), in [-1, 1].

Which labels are positive and negative is read from the model's labels (positive/negative, pos/neg,
bullish/bearish, any case), or given with --positive-label / --negative-label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from acceltune.errors import UserError

POSITIVE_NAMES = ("positive", "pos", "bullish")
NEGATIVE_NAMES = ("negative", "neg", "bearish")


def _find(labels: list[str], given: str | None, names: tuple[str, ...], flag: str) -> int:
    if given is not None:
        if given not in labels:
            raise UserError(f"{flag} {given!r} is not one of the model's labels ({', '.join(labels)})")
        return labels.index(given)
    matches = [i for i, label in enumerate(labels) if label.strip().lower() in names]
    if len(matches) != 1:
        raise UserError(f"cannot tell which of the model's labels ({', '.join(labels)}) is "
                        f"{flag.removeprefix('--').removesuffix('-label')}: pass {flag} LABEL")
    return matches[0]


@dataclass(frozen=True)
class Polarity:
    labels: tuple[str, ...]
    positive: int
    negative: int

    @classmethod
    def of(cls, labels: list[str], positive: str | None = None, negative: str | None = None) -> "Polarity":
        labels = list(labels)
        pos = _find(labels, positive, POSITIVE_NAMES, "--positive-label")
        neg = _find(labels, negative, NEGATIVE_NAMES, "--negative-label")
        if pos == neg:
            raise UserError(f"--positive-label and --negative-label are both {labels[pos]!r}: name two different labels")
        return cls(tuple(labels), pos, neg)

    def sentiment(self, probs: np.ndarray) -> np.ndarray:
        """P(positive) - P(negative) per row."""
        return probs[:, self.positive] - probs[:, self.negative]
