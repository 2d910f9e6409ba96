"""The monitor's settings, one frozen dataclass per concern; their flags are generated from the fields
(acceltune.add_dataclass_arguments), the help from ``metadata["help"]``. Ingest and serve take the same
index, alert and webhook flags: use the same values for one database."""

from __future__ import annotations

from dataclasses import dataclass, field

from acceltune.errors import UserError
from acceltune.monitor.timestamps import parse_duration_s


def _f(default, help: str = "", **metadata):
    return field(default=default, metadata={"help": help, **metadata})


@dataclass(frozen=True)
class Window:
    label: str  # as given: "1h"
    ms: int


@dataclass(frozen=True)
class IndexSettings:
    windows: str = _f("1h,1d", "comma-separated index windows (buckets aligned to UTC), e.g. 15m,1h,1d")
    positive_label: str | None = _f(None, "the model's positive label (default: read from its labels)")
    negative_label: str | None = _f(None, "the model's negative label (default: read from its labels)")

    def __post_init__(self):
        try:
            spans = [Window(w.strip(), parse_duration_s(w) * 1000) for w in self.windows.split(",") if w.strip()]
        except ValueError as e:
            raise UserError(f"--windows: {e}") from None
        if not spans or len({w.label for w in spans}) != len(spans):
            raise UserError(f"--windows {self.windows!r}: give one or more different windows, e.g. 1h,1d")
        object.__setattr__(self, "spans", tuple(spans))

    def window(self, label: str) -> Window | None:
        return next((w for w in self.spans if w.label == label), None)


@dataclass(frozen=True)
class AlertRules:
    alert_k: float = _f(3.0, "alert when a bucket's index is more than K standard deviations from its trailing history")
    history: int = _f(24, "trailing buckets (each with at least --min-items) the index is compared with")
    min_history: int = _f(3, "no index alert until this many trailing buckets exist")
    min_items: int = _f(10, "a bucket alerts only with at least this many items (noise does not alert)")
    negative_share: float = _f(0.5, "alert when more than this share of a bucket's items is negative (1 disables)")
    min_std: float = _f(0.05, "the smallest standard deviation used, so a flat history does not alert on a wobble")

    def __post_init__(self):
        checks = [(self.alert_k > 0, "--alert-k must be > 0"), (self.history >= 1, "--history must be >= 1"),
                  (1 <= self.min_history <= self.history, "--min-history must be 1..--history"),
                  (self.min_items >= 1, "--min-items must be >= 1"),
                  (0 < self.negative_share <= 1, "--negative-share must be in (0, 1]"),
                  (self.min_std > 0, "--min-std must be > 0")]
        for ok, message in checks:
            if not ok:
                raise UserError(message)


@dataclass(frozen=True)
class WebhookSettings:
    webhook: str | None = _f(None, "POST each new alert as JSON to this URL (Idempotency-Key header: the alert's key)")
    webhook_retries: int = _f(5, "retries of a failed POST, with exponential back-off")
    webhook_backoff_s: float = _f(0.5, "the first retry's delay; each next one doubles it")
    webhook_timeout_s: float = _f(5.0, "seconds one POST may take")

    def __post_init__(self):
        if self.webhook is not None and not self.webhook.startswith(("http://", "https://")):
            raise UserError(f"--webhook {self.webhook!r} must be an http:// or https:// URL")
        if self.webhook_retries < 0 or self.webhook_backoff_s < 0 or self.webhook_timeout_s <= 0:
            raise UserError("--webhook-retries and --webhook-backoff-s must be >= 0, --webhook-timeout-s > 0")


@dataclass(frozen=True)
class ReadSettings:
    format: str = _f("auto", "input format; auto: .csv files are CSV, others JSON Lines (stdin: sniffed)",
                     choices=("auto", "jsonl", "csv"))
    follow: bool = _f(False, "keep reading as the file grows (or stdin, until it closes); stop with Ctrl-C or SIGTERM")
    poll_interval_s: float = _f(0.5, "how often a followed file is checked for new lines")
    batch_size: int = _f(256, "items scored and committed together (one transaction with the input position)")

    def __post_init__(self):
        if self.poll_interval_s <= 0 or self.batch_size < 1:
            raise UserError("--poll-interval-s must be > 0 and --batch-size >= 1")
