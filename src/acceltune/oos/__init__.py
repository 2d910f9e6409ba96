"""Out-of-scope detection: a score on the model's outputs, a threshold chosen on validation for a goal.

A message is out of scope when its score is above the threshold, or when the model's best class is the
out-of-scope label itself (when that label was learnt). Higher scores mean "further from what the model
was trained on". The parts:

- ``scores``: the four scores (msp_temperature, energy, mahalanobis, knn), fitted on the training split's
  pooled features and the validation logits;
- ``calibration``: the threshold for a goal, and the in-scope / out-of-scope metrics at a threshold;
- ``rule``: `OOSRule`, fitted on a trained model's outputs, saved beside the weights (acceltune.json's
  ``oos`` entry and ``oos.npz``) and applied by the Predictor to every backend's outputs.

This module holds only the names and the goal grammar (the config validates flags with them cheaply).
"""

from __future__ import annotations

from dataclasses import dataclass

from acceltune.errors import UserError

SCORES = ("msp_temperature", "energy", "mahalanobis", "knn")
"""Every selectable score (--oos-score), higher = more out of scope."""
FALLBACK_SCORE = "mahalanobis"
"""--oos-score auto without out-of-scope validation examples (nothing to compare on): the score that won on
Banking77 with held-out intents (docs/out-of-scope.md)."""
GOAL_KINDS = ("in_scope_recall", "oos_recall")
DEFAULT_GOAL = "in_scope_recall=0.95"
"""The goal when validation holds out-of-scope examples and --oos-goal is not given."""
STATS_FILE = "oos.npz"
"""The statistics a score needs (class means and precision matrix, kNN bank), beside acceltune.json."""


@dataclass(frozen=True)
class Goal:
    """What the threshold must achieve on validation: keep at least ``value`` of in-scope messages
    (in_scope_recall), or catch at least ``value`` of out-of-scope ones (oos_recall)."""

    kind: str
    value: float

    def __str__(self) -> str:
        return f"{self.kind}={self.value:g}"


def parse_goal(text: str) -> Goal | None:
    """``in_scope_recall=0.97`` / ``oos_recall=0.9`` -> Goal; ``none`` -> None (no rule)."""
    if text.strip().lower() == "none":
        return None
    kind, sep, value = text.partition("=")
    kind = kind.strip()
    try:
        number = float(value)
    except ValueError:
        number = None
    if not sep or kind not in GOAL_KINDS or number is None or not 0.0 < number < 1.0:
        raise UserError(f"--oos-goal {text!r} is not a goal: write in_scope_recall=R or oos_recall=R with R in (0, 1), "
                        f"e.g. {DEFAULT_GOAL}, or none")
    return Goal(kind, number)
