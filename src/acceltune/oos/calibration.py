"""Thresholds for a goal, and what a threshold gives: in-scope accuracy, OOS precision / recall / F1 / AUROC.

A message is flagged out of scope when its score is above the threshold or when it is ``forced``: the
model's best class is the out-of-scope label (when that label was learnt). Thresholds sit halfway
between neighbouring validation scores, so a new score equal to a validation one is decided the same way.
"""

from __future__ import annotations

import math

import numpy as np

from acceltune.oos import Goal


def _midpoint_below(sorted_desc: np.ndarray, k: int) -> float:
    """A threshold with exactly the k largest values above it (ties aside): between the k-th and (k+1)-th."""
    if len(sorted_desc) == 0:
        return 0.0
    if k <= 0:
        return float(sorted_desc[0]) + 1e-6 * max(1.0, abs(float(sorted_desc[0])))
    if k >= len(sorted_desc):
        return float(sorted_desc[-1]) - 1e-6 * max(1.0, abs(float(sorted_desc[-1]))) - 1e-9
    return float((sorted_desc[k - 1] + sorted_desc[k]) / 2.0)


def threshold_for_goal(in_scores: np.ndarray, oos_scores: np.ndarray, goal: Goal,
                       in_forced: np.ndarray | None = None, oos_forced: np.ndarray | None = None) -> float:
    """The threshold meeting ``goal`` on validation scores of in-scope and out-of-scope messages.

    in_scope_recall=R: the lowest threshold that still keeps at least R of the in-scope messages (as many
    out-of-scope ones caught as that allows). oos_recall=R: the highest threshold that still catches at
    least R of the out-of-scope messages (as few in-scope ones rejected as that allows); unreachable R
    rejects everything above the lowest score."""
    in_scores, oos_scores = np.asarray(in_scores, np.float64), np.asarray(oos_scores, np.float64)
    in_forced = np.zeros(len(in_scores), bool) if in_forced is None else np.asarray(in_forced, bool)
    oos_forced = np.zeros(len(oos_scores), bool) if oos_forced is None else np.asarray(oos_forced, bool)
    if goal.kind == "in_scope_recall":
        allowed = math.floor((1.0 - goal.value) * len(in_scores) + 1e-9) - int(in_forced.sum())
        free = np.sort(in_scores[~in_forced])[::-1]
        return _midpoint_below(free, allowed)
    needed = math.ceil(goal.value * len(oos_scores) - 1e-9) - int(oos_forced.sum())
    free_oos = np.sort(oos_scores[~oos_forced])[::-1]
    everything = np.sort(np.concatenate([in_scores[~in_forced], free_oos]))[::-1]
    if needed <= 0:
        return _midpoint_below(everything, 0)
    if needed > len(free_oos):
        return _midpoint_below(everything, len(everything))
    # Above the needed-th largest out-of-scope score, below it the next lower score of any message.
    v = free_oos[needed - 1]
    lower = everything[everything < v]
    return float((v + lower[0]) / 2.0) if len(lower) else float(v) - 1e-6 * max(1.0, abs(float(v)))


def decision_scores(scores: np.ndarray, forced: np.ndarray) -> np.ndarray:
    """Scores for ranking (AUROC): forced messages above every score."""
    scores = np.asarray(scores, np.float64)
    if not forced.any():
        return scores
    return np.where(forced, scores.max() + 1.0, scores)


def auroc(true_oos: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve of out-of-scope vs in-scope; None without both kinds."""
    from sklearn.metrics import roc_auc_score

    true_oos = np.asarray(true_oos, bool)
    if true_oos.all() or not true_oos.any():
        return None
    return float(roc_auc_score(true_oos, scores))


def oos_metrics(true_oos: np.ndarray, correct: np.ndarray, flags: np.ndarray, scores: np.ndarray) -> dict:
    """in_scope_accuracy (a rejected in-scope message counts as wrong), in_scope_recall (share not rejected),
    oos_precision, oos_recall, oos_f1, oos_auroc (of ``scores``), and the counts. ``correct``: the model's
    class is the true one (read for in-scope messages only)."""
    true_oos, correct, flags = np.asarray(true_oos, bool), np.asarray(correct, bool), np.asarray(flags, bool)
    inside = ~true_oos
    tp = int((flags & true_oos).sum())
    predicted, actual = int(flags.sum()), int(true_oos.sum())
    precision = tp / predicted if predicted else 0.0
    recall = tp / actual if actual else 0.0
    return {
        "in_scope_accuracy": float((correct & ~flags)[inside].mean()) if inside.any() else None,
        "in_scope_recall": float((~flags)[inside].mean()) if inside.any() else None,
        "oos_precision": float(precision),
        "oos_recall": float(recall) if actual else None,
        "oos_f1": float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0,
        "oos_auroc": auroc(true_oos, scores),
        "in_scope_examples": int(inside.sum()),
        "oos_examples": actual,
        "flagged_oos": predicted,
    }


def sweep(scores: np.ndarray, true_oos: np.ndarray, correct: np.ndarray, forced: np.ndarray) -> dict[str, np.ndarray]:
    """In-scope accuracy and OOS recall at every distinct threshold (flag ``score > threshold``), exactly."""
    scores = np.asarray(scores, np.float64)
    true_oos, correct, forced = np.asarray(true_oos, bool), np.asarray(correct, bool), np.asarray(forced, bool)
    thresholds = np.unique(np.concatenate([scores, [scores.min() - 1.0 if len(scores) else 0.0]]))
    n_in, n_oos = max(int((~true_oos).sum()), 1), max(int(true_oos.sum()), 1)
    kept_right = np.sort(scores[~true_oos & correct & ~forced])
    caught = np.sort(scores[true_oos & ~forced])
    above_right = len(kept_right) - np.searchsorted(kept_right, thresholds, side="right")
    above_caught = len(caught) - np.searchsorted(caught, thresholds, side="right")
    return {"threshold": thresholds,
            "in_scope_accuracy": (len(kept_right) - above_right) / n_in,
            "oos_recall": (int((true_oos & forced).sum()) + above_caught) / n_oos}


def best_recall_at(curve: dict[str, np.ndarray], min_in_scope_accuracy: float) -> dict:
    """The threshold with the highest OOS recall whose in-scope accuracy is at least ``min_in_scope_accuracy``."""
    ok = curve["in_scope_accuracy"] >= min_in_scope_accuracy - 1e-12
    if not ok.any():
        return {"oos_recall": None, "in_scope_accuracy": None, "threshold": None}
    i = np.flatnonzero(ok)[np.argmax(curve["oos_recall"][ok])]
    return {"oos_recall": float(curve["oos_recall"][i]), "in_scope_accuracy": float(curve["in_scope_accuracy"][i]),
            "threshold": float(curve["threshold"][i])}


def summary_line(result: dict, score: str) -> str:
    """The out-of-scope figures of one evaluated split (oos_metrics' keys), in one line."""
    def f(v):
        return "n/a" if v is None else f"{v:.4f}"

    return (f"out of scope ({score}): in-scope accuracy {f(result['in_scope_accuracy'])} · OOS recall {f(result['oos_recall'])} · "
            f"precision {f(result['oos_precision'])} · F1 {f(result['oos_f1'])} · AUROC {f(result['oos_auroc'])} · "
            f"{result['oos_examples']} out-of-scope examples")
