"""Labeled data: read a file (read), validate it (validate), turn it into examples and splits (examples)."""

from acceltune.data.examples import Splits, load_labeled, load_splits, load_texts
from acceltune.data.read import load_table

__all__ = ["Splits", "load_labeled", "load_splits", "load_table", "load_texts"]
