"""Alert rules, evaluated on a bucket each time a batch changes it (pure functions over bucket rows).

- ``index_drop`` / ``index_rise``: the bucket's index is more than k standard deviations (at least
  --min-std) below / above the mean of its trailing history (the previous --history buckets holding
  at least --min-items each; at least --min-history of them).
- ``negative_share``: more than --negative-share of the bucket's items are negative.

A bucket alerts only once it holds --min-items items. Each alert has a key (entity, window, bucket, rule):
it is stored once however often the condition is seen again, and that key is the webhook's idempotency key.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence

from acceltune.monitor.settings import AlertRules
from acceltune.monitor.timestamps import format_ms


@dataclass(frozen=True, slots=True)
class Bucket:
    start: int
    n: int
    sentiment_sum: float
    negative: int

    @property
    def index(self) -> float:
        return self.sentiment_sum / self.n

    @property
    def negative_share(self) -> float:
        return self.negative / self.n


@dataclass(frozen=True)
class Alert:
    entity: str
    window: str
    start: int
    rule: str
    value: float
    threshold: float
    n: int
    message: str

    @property
    def key(self) -> str:
        return f"{self.entity}/{self.window}/{self.start}/{self.rule}"


def evaluate(entity: str, window: str, current: Bucket, history: Sequence[Bucket], rules: AlertRules) -> list[Alert]:
    """The alerts ``current`` raises against ``history`` (earlier buckets, newest first)."""
    if current.n < rules.min_items:
        return []
    out = []
    when = f"{entity} {window} from {format_ms(current.start)}"
    trailing = [b.index for b in history if b.n >= rules.min_items][:rules.history]
    if len(trailing) >= rules.min_history:
        mean = statistics.fmean(trailing)
        sd = max(statistics.pstdev(trailing), rules.min_std)
        z = (current.index - mean) / sd
        if abs(z) > rules.alert_k:
            rule, threshold = ("index_drop", mean - rules.alert_k * sd) if z < 0 else ("index_rise", mean + rules.alert_k * sd)
            out.append(Alert(entity, window, current.start, rule, current.index, threshold, current.n,
                             f"{when}: index {current.index:+.3f} over {current.n} items is {abs(z):.1f} standard "
                             f"deviations {'below' if z < 0 else 'above'} its trailing mean {mean:+.3f}"))
    if rules.negative_share < 1 and current.negative_share > rules.negative_share:
        out.append(Alert(entity, window, current.start, "negative_share", current.negative_share, rules.negative_share,
                         current.n, f"{when}: {current.negative_share:.0%} of {current.n} items are negative "
                                    f"(threshold {rules.negative_share:.0%})"))
    return out
