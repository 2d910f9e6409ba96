"""Classification metrics from logits and labels, and metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from acceltune.modeldir import atomic_write_text


def probabilities(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    if multi_label:
        return 1.0 / (1.0 + np.exp(-logits))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def compute_metrics(logits: np.ndarray, labels: np.ndarray, label_names: list[str], multi_label: bool = False,
                    threshold: float = 0.5, detailed: bool = False) -> dict:
    """accuracy, macro/micro/weighted F1; with detailed=True also per-class scores and the confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    n = len(label_names)
    if multi_label:
        y_true = np.asarray(labels).astype(int)
        y_pred = (probabilities(logits, True) >= threshold).astype(int)
    else:
        y_true = np.asarray(labels).astype(int)
        y_pred = logits.argmax(axis=1)
    metrics = {
        "accuracy": float(accuracy_score(y_true, y_pred)),  # subset accuracy for multi-label
        "examples": int(len(y_true)),
    }
    classes = None if multi_label else list(range(n))
    for avg in ("macro", "micro", "weighted"):
        metrics[f"{avg}_f1"] = float(f1_score(y_true, y_pred, average=avg, labels=classes, zero_division=0))
    if multi_label:
        metrics["hamming_accuracy"] = float((y_true == y_pred).mean())
    if detailed:
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
        metrics["per_class"] = {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(label_names)
        }
        if not multi_label:
            metrics["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=classes).tolist()
    return metrics


def write_metrics(path: Path, metrics: dict) -> None:
    atomic_write_text(path, json.dumps(metrics, indent=2))
