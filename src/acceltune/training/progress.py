"""What a run shows and records: a rich progress bar (ETA, live loss, samples/s), TensorBoard
event files and a JSONL log of the same records. Only the main process writes."""

from __future__ import annotations

import json
import time
from pathlib import Path


class ThroughputWindow:
    """Loss, samples and tokens since the last log, over training time only (evaluation paused out)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.loss = 0.0
        self.samples = 0
        self.tokens = 0
        self.steps = 0
        self.seconds = 0.0
        self._since = time.perf_counter()

    def pause(self) -> None:
        self.seconds += time.perf_counter() - self._since

    def resume(self) -> None:
        self._since = time.perf_counter()

    def elapsed(self) -> float:
        return self.seconds + time.perf_counter() - self._since


class RunLogger:
    def __init__(self, output_dir: Path, is_main: bool, total_steps: int, quiet: bool = False, resume_step: int = 0,
                 history: list[dict] | None = None):
        self.is_main = is_main
        self.writer = None
        self.jsonl = None
        self.progress = None
        if not is_main:
            return
        from rich.console import Console

        self.console = Console(stderr=True, quiet=quiet)
        from acceltune.errors import UserError
        from acceltune.extras import require

        try:
            require("tensorboard", "tensorboard")
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(output_dir / "logs"))
        except UserError as e:  # tensorboard is an extra: training goes on without event files
            from rich.markup import escape

            self.console.print(f"[yellow]no TensorBoard event files will be written: {escape(str(e))}")  # [..] is no markup
        log_path = output_dir / "log.jsonl"
        if history is not None:
            # Resuming: the log holds exactly the checkpoint's history (records logged after it, by the
            # interrupted run, are dropped, as the resumed run logs those steps again).
            from acceltune.modeldir import atomic_write_text

            atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in history))
        self.jsonl = open(log_path, "a", buffering=1)
        if not quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                                     console=self.console, transient=False)
            self.task = self.progress.add_task("train", total=total_steps, completed=resume_step, status="")
            self.progress.start()

    def note(self, text: str) -> None:
        if self.is_main:  # soft wrap: no newlines inserted into paths and numbers (logs get grepped)
            self.console.print(text, soft_wrap=True, highlight=False, markup=False)

    def log(self, record: dict, line: str | None = None) -> None:
        """Append the record to log.jsonl and TensorBoard; a train record updates the bar, ``line`` is printed."""
        if not self.is_main:
            return
        record.setdefault("time", round(time.time(), 3))  # the caller's dict (kept in the run's history) gets it too
        self.jsonl.write(json.dumps(record) + "\n")
        step, kind = record["step"], record["kind"]
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step",):
                    self.writer.add_scalar(f"{kind}/{key}", value, step)
        if kind == "train" and self.progress is not None:
            self.progress.update(self.task, status=f"loss {record['loss']:.4f} · {record['samples_per_second']:.1f} samples/s")
        if line is not None:
            self.console.print(line)

    def advance(self, step: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step)

    def close(self) -> None:
        if not self.is_main:
            return
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.jsonl is not None:
            self.jsonl.close()
            self.jsonl = None
