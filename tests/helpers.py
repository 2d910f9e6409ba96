"""Small builders shared by test files (data files, CLI runs)."""

from __future__ import annotations

import csv
import random
import subprocess
import sys
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

WORDS = {
    "negative": ["terrible", "awful", "bad", "broken", "angry", "refund", "worst", "late"],
    "neutral": ["okay", "report", "meeting", "schedule", "update", "note", "today", "table"],
    "positive": ["great", "love", "excellent", "happy", "perfect", "thanks", "best", "wonderful"],
}


def write_labeled_csv(path: Path, n_per_class: int = 20, seed: int = 0, labels=("negative", "neutral", "positive")) -> Path:
    """A separable synthetic 3-class dataset of short texts of varied length."""
    rng = random.Random(seed)
    rows = []
    for label in labels:
        for _ in range(n_per_class):
            k = rng.randint(2, 9)
            rows.append({"text": " ".join(rng.choice(WORDS[label]) for _ in range(k)), "label": label})
    rng.shuffle(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["text", "label"])
        w.writeheader()
        w.writerows(rows)
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m acceltune ...` in a subprocess (exit code and stderr as a user sees them)."""
    return subprocess.run([sys.executable, "-m", "acceltune", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})


SAMPLE_TEXTS = [
    "ok",
    "I still have not received my new card, I ordered it over a week ago and nobody answers.",
    "great service",
    "Why was I charged a fee for withdrawing cash abroad when the app said it would be free?",
    "refund please",
    "The transfer is pending",
]
"""Short and long customer messages for inference and export tests."""
