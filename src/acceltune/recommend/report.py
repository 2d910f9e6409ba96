"""report.md and figures of a recommender run; the baselines on the same split, for metrics.json."""

from __future__ import annotations

from pathlib import Path

from acceltune.recommend.baselines import baseline_metrics

PROTOCOL = ("Leave-one-out per user (last interaction = test, the one before = validation; users with fewer than 3 "
            "interactions train only); full ranking over every catalogue item, the user's own history excluded; "
            "ties broken by item index.")
COLUMNS = ("hr@10", "ndcg@10", "recall@20", "mrr", "coverage@10")


def add_baselines(metrics: dict, splits) -> None:
    """Most-popular and item-kNN on the split the model was scored on, and the protocol, into ``metrics``."""
    split = "test" if "test" in metrics else "validation"
    metrics["baselines"] = baseline_metrics(splits.split, len(splits.catalogue), split)
    metrics["protocol"] = PROTOCOL


def write_recommend_report(output_dir: Path, metrics: dict, history: list[dict], splits, title: str) -> None:
    split = "test" if "test" in metrics else "validation"
    rows = {"sequence model (this run)": metrics[split], **{name.replace("_", "-"): m for name, m in metrics["baselines"].items()}}
    figures = [name for name in (_curves(output_dir, history), _bars(output_dir, rows)) if name]
    lines = [f"# {title}", "", f"Protocol: {PROTOCOL}", "",
             f"{metrics[split].get('users', 0)} {split} users · {len(splits.catalogue)} items · "
             f"train {metrics.get('train_runtime_s')} s · best step {metrics.get('best_step')} · {metrics.get('precision')} on {metrics.get('device')}",
             "", "| model | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for name, m in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{m.get(c, float('nan')):.4f}" for c in COLUMNS) + " |")
    lines += ["", *[f"![{f}]({f})" for f in figures], ""]
    (output_dir / "report.md").write_text("\n".join(lines))


def _curves(output_dir: Path, history: list[dict]) -> str | None:
    train = [r for r in history if r.get("kind") == "train"]
    evals = [r for r in history if r.get("kind") == "eval" and "ndcg@10" in r]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    ax[0].plot([r["step"] for r in train], [r["loss"] for r in train])
    ax[0].set(xlabel="step", ylabel="training loss")
    ax[1].plot([r["step"] for r in evals], [r["ndcg@10"] for r in evals], marker="o")
    ax[1].set(xlabel="step", ylabel="validation NDCG@10")
    fig.tight_layout()
    fig.savefig(output_dir / "training_curves.png", dpi=100)
    plt.close(fig)
    return "training_curves.png"


def _bars(output_dir: Path, rows: dict[str, dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = np.arange(len(COLUMNS))
    width = 0.8 / len(rows)
    for i, (name, m) in enumerate(rows.items()):
        ax.bar(x + i * width, [m.get(c, 0.0) for c in COLUMNS], width, label=name)
    ax.set_xticks(x + width * (len(rows) - 1) / 2, COLUMNS)
    ax.legend()
    fig.tight_layout()
    fig.savefig(output_dir / "comparison.png", dpi=100)
    plt.close(fig)
    return "comparison.png"
