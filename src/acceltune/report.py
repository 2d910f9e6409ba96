"""The human-readable report: Markdown with the headline metrics, a confusion-matrix image, training curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from acceltune.modeldir import atomic_write_text


def confusion_figure(matrix: list[list[int]], label_names: list[str]):
    """The confusion matrix as a matplotlib figure, sized for the number of labels."""
    import matplotlib

    matrix_arr = np.asarray(matrix)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(label_names)
    size = min(max(4.5, 0.28 * n + 2), 24)
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
    # Over the figure, not the axes, in two short lines: one long line centred over the axes ran past the
    # edge of the small figures of few-label tasks.
    fig.suptitle("Confusion matrix\n(colour: share of the true class; numbers: counts)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_confusion(matrix: list[list[int]], label_names: list[str], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = confusion_figure(matrix, label_names)
    fig.savefig(path, dpi=110, bbox_inches="tight")
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


def plot_oos_tradeoff(tradeoff: dict, path: Path, title: str) -> None:
    """In-scope accuracy against OOS recall over the thresholds, the chosen threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.plot(tradeoff["oos_recall"], tradeoff["in_scope_accuracy"], "-", label="every threshold")
    recall, accuracy = tradeoff["chosen"][1], tradeoff["chosen"][0]
    if recall is not None and accuracy is not None:
        ax.plot([recall], [accuracy], "o", color="C3", markersize=8, label=f"chosen: recall {recall:.3f}, accuracy {accuracy:.3f}")
    ax.set_xlabel("out-of-scope recall")
    ax.set_ylabel("in-scope accuracy (rejected = wrong)")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    if "oos_tradeoff" in result:
        rule = metrics.get("oos", {})
        plot_oos_tradeoff(result["oos_tradeoff"], output_dir / "oos_tradeoff.png",
                          f"Out of scope ({split}): {rule.get('score', '')} score, {rule.get('goal', '')}")
        lines += [f"## Out of scope ({split})", "",
                  f"Rule: {rule.get('score')} score above {_fmt(rule.get('threshold'))}, calibrated for {rule.get('goal')} on validation.", "",
                  "![out-of-scope trade-off](oos_tradeoff.png)", ""]
    if history and plot_curves(history, output_dir / "training_curves.png"):
        lines += ["## Training curves", "", "![training curves](training_curves.png)", ""]
    path = output_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.4f}"  # times and rates vs scores in [0, 1]
    return str(v)
