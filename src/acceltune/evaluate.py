"""Metrics and the human-readable report (Markdown, a confusion-matrix image, training curves)."""

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


def plot_confusion(matrix: list[list[int]], label_names: list[str], path: Path) -> None:
    import matplotlib

    matrix_arr = np.asarray(matrix)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(label_names)
    size = min(max(4.0, 0.28 * n + 2), 24)
    fig, ax = plt.subplots(figsize=(size, size))
    norm = matrix_arr / np.maximum(matrix_arr.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), label_names, rotation=90, fontsize=max(4, 10 - n // 10))
    ax.set_yticks(range(n), label_names, fontsize=max(4, 10 - n // 10))
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if matrix_arr[i, j]:
                    ax.text(j, i, str(matrix_arr[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (row-normalised colour, counts)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(history: list[dict], path: Path) -> bool:
    """Training loss, learning rate and validation metrics against the step; False when nothing to plot."""
    train = [h for h in history if h.get("kind") == "train"]
    evals = [h for h in history if h.get("kind") == "eval"]
    if not train and not evals:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    if train:
        axes[0].plot([h["step"] for h in train], [h["loss"] for h in train], label="train loss")
        axes[1].plot([h["step"] for h in train], [h["learning_rate"] for h in train])
    if evals:
        axes[0].plot([h["step"] for h in evals], [h["loss"] for h in evals], "o-", label="validation loss")
        for key in ("accuracy", "macro_f1"):
            axes[2].plot([h["step"] for h in evals], [h[key] for h in evals], "o-", label=key)
        axes[2].legend()
    axes[0].legend()
    axes[0].set_title("loss")
    axes[1].set_title("learning rate")
    axes[2].set_title("validation")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_report(output_dir: Path, metrics: dict, label_names: list[str], history: list[dict] | None = None,
                 split: str = "test", title: str = "acceltune report") -> Path:
    """report.md with the headline metrics, per-class table, confusion matrix and curves."""
    output_dir.mkdir(parents=True, exist_ok=True)
    result = metrics.get(split, {})
    lines = [f"# {title}", ""]
    headline = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    if headline:
        lines += ["| run | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in headline.items()] + [""]
    for name, block in metrics.items():
        if isinstance(block, dict) and "accuracy" in block:
            lines += [f"## {name}", "", "| metric | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in block.items() if not isinstance(v, (dict, list))]
            lines.append("")
    if "per_class" in result:
        lines += [f"## Per class ({split})", "", "| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for name, row in result["per_class"].items():
            lines.append(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |")
        lines.append("")
    if "confusion_matrix" in result:
        plot_confusion(result["confusion_matrix"], label_names, output_dir / "confusion_matrix.png")
        lines += [f"## Confusion matrix ({split})", "", "![confusion matrix](confusion_matrix.png)", ""]
    if history and plot_curves(history, output_dir / "training_curves.png"):
        lines += ["## Training curves", "", "![training curves](training_curves.png)", ""]
    path = output_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def write_metrics(path: Path, metrics: dict) -> None:
    atomic_write_text(path, json.dumps(metrics, indent=2))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.4f}"  # times and rates vs scores in [0, 1]
    return str(v)
