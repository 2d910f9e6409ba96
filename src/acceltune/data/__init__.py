"""Labeled data: read a file, validate it, turn it into examples and splits."""

from acceltune.data.examples import Splits, load_labeled, load_splits, load_table, load_texts

__all__ = ["Splits", "load_labeled", "load_splits", "load_table", "load_texts"]
