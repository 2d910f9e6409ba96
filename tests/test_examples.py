"""The example files in examples/ still match what they are examples for."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "acceltune"


def test_the_demo_replies_file_covers_the_demo_dataset():
    """examples/assistant/demo_replies.yaml names exactly the intents `make demo` learns."""
    import csv

    from acceltune.assistant.replies import load_replies

    data = SRC / "demo_data" / "train.csv"
    labels = sorted({row["label"] for row in csv.DictReader(data.open())})
    load_replies(ROOT / "examples" / "assistant" / "demo_replies.yaml", labels)  # raises on a missing or unknown intent
