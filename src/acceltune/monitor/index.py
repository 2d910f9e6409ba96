"""The sentiment index: per entity and window, buckets aligned to UTC holding the item count, the sum of
sentiments (P(positive) - P(negative)) and the negative and positive counts. index = sum / count.

Kept incrementally: each committed batch adds its deltas to the buckets it touches (an upsert per touched
bucket), so a query reads a handful of rows whatever the number of items. Every item also counts towards
the market-wide entity ``*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from acceltune.monitor.settings import Window

ALL = "*"  # every item, whatever it mentions


@dataclass
class Delta:
    n: int = 0
    sentiment_sum: float = 0.0
    negative: int = 0
    positive: int = 0


@dataclass(frozen=True, slots=True)
class Scored:
    """What the index needs of one stored item."""

    entities: Sequence[str]
    ts: int
    sentiment: float
    negative: bool  # its label is the negative one
    positive: bool


def bucket_start(ts: int, window: Window) -> int:
    return ts - ts % window.ms  # floor, also for times before 1970


def deltas(items: Iterable[Scored], windows: Sequence[Window]) -> dict[tuple[str, str, int], Delta]:
    """(entity, window, bucket start) -> what these items add to that bucket."""
    out: dict[tuple[str, str, int], Delta] = {}
    for item in items:
        for window in windows:
            start = bucket_start(item.ts, window)
            for entity in (ALL, *item.entities):
                d = out.get((entity, window.label, start))
                if d is None:
                    d = out[(entity, window.label, start)] = Delta()
                d.n += 1
                d.sentiment_sum += item.sentiment
                d.negative += item.negative
                d.positive += item.positive
    return out
