"""The ingest progress bar (rich, on stderr): bytes of the input for the bar and the ETA, items and items/s."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn


class IngestProgress:
    def __init__(self, total_bytes: int | None, start_bytes: int = 0):
        self.progress = Progress(TextColumn("ingest"), BarColumn(), TaskProgressColumn(),
                                 TextColumn("{task.fields[items]} items, {task.fields[rate]} items/s"),
                                 TimeRemainingColumn(), console=Console(stderr=True), transient=False)
        self.task = self.progress.add_task("ingest", total=total_bytes, completed=start_bytes, items=0, rate="-")
        self.started = time.perf_counter()
        self.items = 0

    def __enter__(self) -> "IngestProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def update(self, items: int, offset: int) -> None:
        elapsed = time.perf_counter() - self.started
        self.progress.update(self.task, completed=offset, items=f"{items:,}", rate=f"{items / elapsed:,.0f}" if elapsed else "-")
