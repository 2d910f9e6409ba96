"""`OOSRule`: a fitted score and its threshold, saved with the model and applied to any backend's outputs.

acceltune.json's ``oos`` entry holds the rule (score, threshold, goal, the out-of-scope label, the score's
scalar parameters, the validation figures it was chosen on); ``oos.npz`` holds the arrays the score
needs (class means and precision matrix, or the kNN bank). Exports copy both, so an ONNX or int8 export
applies the same rule to its own logits and features.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from acceltune.cpu import one_blas_thread
from acceltune.errors import UserError
from acceltune.inference.backends.base import Outputs
from acceltune.oos import DEFAULT_GOAL, FALLBACK_SCORE, SCORES, STATS_FILE, Goal, parse_goal
from acceltune.oos.calibration import decision_scores, oos_metrics, threshold_for_goal
from acceltune.oos.scores import SCORE_CLASSES, FitData, Score


@dataclass
class OOSRule:
    score: str
    """One of acceltune.oos.SCORES."""
    threshold: float
    """Out of scope when the score is above it."""
    goal: str
    """The validation goal the threshold was chosen for, e.g. in_scope_recall=0.95."""
    label: str | None
    """The out-of-scope label's name (what training data and evaluation files call it)."""
    label_index: int | None
    """Its class index when it is one of the model's labels: the model's best class being it is out of scope too."""
    num_labels: int
    params: dict = field(default_factory=dict)
    """The score's scalar parameters (temperature, k)."""
    validation: dict = field(default_factory=dict)
    """Figures on the validation split it was calibrated on (per-score AUROC, the rates at the threshold)."""
    arrays: dict = field(default_factory=dict, repr=False)
    """The score's arrays (saved in oos.npz, not in acceltune.json)."""

    @property
    def in_scope(self) -> np.ndarray:
        return np.array([i for i in range(self.num_labels) if i != self.label_index], dtype=np.int64)

    @property
    def needs_features(self) -> bool:
        return SCORE_CLASSES[self.score].needs_features

    def scorer(self) -> Score:
        if not hasattr(self, "_scorer"):
            self._scorer = SCORE_CLASSES[self.score](self.in_scope, self.params, self.arrays)
        return self._scorer

    def apply(self, outputs: Outputs) -> tuple[np.ndarray, np.ndarray]:
        """(flags, scores) for a batch of outputs: flags[i] is True when input i is out of scope."""
        if self.needs_features and outputs.features is None:
            raise UserError(f"the {self.score} out-of-scope score needs pooled features and this backend gives none: "
                            f"re-export the model with 'acceltune export'")
        with one_blas_thread():
            scores = self.scorer().score(outputs.logits, outputs.features)
        flags = scores > self.threshold
        if self.label_index is not None:
            flags |= outputs.logits.argmax(axis=1) == self.label_index
        return flags, scores

    # ------------------------------------------------------------------------------------ files

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "arrays"}

    def save(self, model_dir: str | Path) -> None:
        """oos.npz (atomically); the caller records ``to_json()`` as ModelInfo.oos in acceltune.json."""
        import os
        import tempfile

        path = Path(model_dir) / STATS_FILE
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
        os.close(fd)
        try:
            np.savez(tmp, **{k: np.asarray(v) for k, v in self.arrays.items()})
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def from_info(cls, model_dir: str | Path, entry: dict) -> "OOSRule":
        """The rule recorded in acceltune.json, with its arrays from oos.npz."""
        path = Path(model_dir) / STATS_FILE
        arrays = {}
        if SCORE_CLASSES[entry["score"]].needs_features:
            if not path.is_file():
                raise UserError(f"{model_dir} has an out-of-scope rule but no {STATS_FILE}: copy it from the trained "
                                f"model directory (or export again with 'acceltune export')")
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        return cls(**entry, arrays=arrays)


# --------------------------------------------------------------------------------------------- fit


@dataclass
class Calibration:
    """Outputs of the trained model on the splits a rule is fitted on, with class indices in the model's
    label space (an out-of-scope row not among the model's labels: index num_labels)."""

    train: Outputs
    train_labels: np.ndarray
    validation: Outputs
    validation_labels: np.ndarray


def fit_scores(data: Calibration, in_scope: np.ndarray, names=SCORES, extra: tuple = ()) -> dict[str, Score]:
    """Every score in ``names`` (and the ``extra`` Score classes) fitted on the in-scope training and validation rows."""
    keep_train = np.isin(data.train_labels, in_scope)
    keep_val = np.isin(data.validation_labels, in_scope)
    fit = FitData(in_scope=in_scope,
                  train_features=None if data.train.features is None else data.train.features[keep_train],
                  train_labels=data.train_labels[keep_train],
                  val_logits=data.validation.logits[keep_val],
                  val_labels=np.searchsorted(in_scope, data.validation_labels[keep_val]))
    classes = [SCORE_CLASSES[n] for n in names] + list(extra)
    return {c.name: c.fit(fit) for c in classes if not (c.needs_features and fit.train_features is None)}


def fit_rule(data: Calibration, labels: list[str], oos_label: str | None, goal_text: str | None,
             score: str = "auto") -> OOSRule | None:
    """The rule for a trained model, or None when none is asked for (no out-of-scope validation examples and no
    goal, or goal 'none'). ``score='auto'``: the best validation AUROC when validation has out-of-scope examples."""
    n = len(labels)
    label_index = labels.index(oos_label) if oos_label and oos_label in labels else None
    true_oos = data.validation_labels == (label_index if label_index is not None else n)
    have_oos = bool(true_oos.any())
    if goal_text is None and not have_oos:
        return None
    goal = parse_goal(goal_text if goal_text is not None else DEFAULT_GOAL)
    if goal is None:
        return None
    if goal.kind == "oos_recall" and not have_oos:
        raise UserError(f"--oos-goal {goal} needs out-of-scope examples (label {oos_label!r}) in the validation data: "
                        f"add some, or use an in_scope_recall goal")
    in_scope = np.array([i for i in range(n) if i != label_index], dtype=np.int64)
    names = SCORES if score == "auto" else (score,)
    fitted = fit_scores(data, in_scope, names)
    if not fitted:
        raise UserError(f"the {score} out-of-scope score needs pooled features, which this model does not give: "
                        f"choose --oos-score msp_temperature or energy")
    forced = np.zeros(len(true_oos), bool) if label_index is None else data.validation.logits.argmax(1) == label_index
    val_scores = {name: s.score(data.validation.logits, data.validation.features) for name, s in fitted.items()}
    aurocs = {name: _auroc(true_oos, decision_scores(v, forced)) for name, v in val_scores.items()}
    if score != "auto":
        chosen = score
    elif have_oos:
        chosen = max(aurocs, key=lambda k: aurocs[k] or 0.0)  # None: validation holds no in-scope row
    else:
        chosen = FALLBACK_SCORE if FALLBACK_SCORE in fitted else next(iter(fitted))
    v = val_scores[chosen]
    threshold = threshold_for_goal(v[~true_oos], v[true_oos], goal, forced[~true_oos], forced[true_oos])
    flags = forced | (v > threshold)
    correct = data.validation.logits.argmax(1) == data.validation_labels
    at = oos_metrics(true_oos, correct, flags, decision_scores(v, forced))
    s = fitted[chosen]
    return OOSRule(score=chosen, threshold=float(threshold), goal=str(goal), label=oos_label or None, label_index=label_index,
                   num_labels=n, params=s.params,
                   validation={"auroc_by_score": aurocs, "chosen_by": "validation AUROC" if score == "auto" and have_oos
                               else ("--oos-score" if score != "auto" else "default (no out-of-scope validation examples)"),
                               **{k: at[k] for k in ("in_scope_accuracy", "in_scope_recall", "oos_recall", "oos_precision",
                                                     "in_scope_examples", "oos_examples")}},
                   arrays=s.arrays)


def _auroc(true_oos: np.ndarray, scores: np.ndarray) -> float | None:
    from acceltune.oos.calibration import auroc

    return auroc(true_oos, scores)


# --------------------------------------------------------------------------------------- measure

TRADEOFF_POINTS = 100
"""Points of the in-scope accuracy / OOS recall curve kept in metrics.json (for the report's figure)."""


def evaluate_rule(rule: OOSRule, outputs: Outputs, labels: np.ndarray) -> dict:
    """The rule's figures on labelled outputs (class indices; out-of-scope rows: the rule's label index, or
    num_labels when the label is not one of the model's): oos_metrics plus the trade-off curve over thresholds."""
    from acceltune.oos.calibration import sweep

    labels = np.asarray(labels)
    true_oos = labels == (rule.label_index if rule.label_index is not None else rule.num_labels)
    flags, scores = rule.apply(outputs)
    pred = outputs.logits.argmax(axis=1)
    forced = np.zeros(len(pred), bool) if rule.label_index is None else pred == rule.label_index
    result = oos_metrics(true_oos, pred == labels, flags, decision_scores(scores, forced))
    if true_oos.any() and (~true_oos).any():
        curve = sweep(scores, true_oos, pred == labels, forced)
        keep = np.unique(np.linspace(0, len(curve["threshold"]) - 1, TRADEOFF_POINTS).round().astype(int))
        result["oos_tradeoff"] = {"in_scope_accuracy": curve["in_scope_accuracy"][keep].round(5).tolist(),
                                  "oos_recall": curve["oos_recall"][keep].round(5).tolist(),
                                  "chosen": [result["in_scope_accuracy"], result["oos_recall"]]}
    return result
