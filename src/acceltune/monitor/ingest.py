"""The ingestion pipeline, shared by `acceltune monitor ingest` and POST /v1/items: skip known ids, score
the new items in one call, tag them, and commit them with their index deltas, alerts and input position in
one transaction (store.write_batch).

``run_stream`` drives it over an InputReader: lines become items (malformed ones are reported with their
numbers and skipped), items are committed in batches, and a batch is also committed whenever the input
pauses, so a followed feed never waits for a full batch. The committed position is the end of the last
line wholly consumed: a restart resumes there, and a crash loses only what was never acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from acceltune.errors import UserError
from acceltune.monitor.alerts import Alert
from acceltune.monitor.entities import Tagger
from acceltune.monitor.items import CsvParser, Item, JsonLinesParser, Malformed
from acceltune.monitor.reader import InputReader, Line, file_identity, first_line
from acceltune.monitor.sentiment import Polarity
from acceltune.monitor.settings import AlertRules, IndexSettings
from acceltune.monitor.store import Position, Row, Store

#: texts -> class probabilities (inputs, labels), in input order
Scorer = Callable[[list[str]], np.ndarray]


@dataclass
class Outcome:
    inserted: int = 0
    duplicates: int = 0
    alerts: list[Alert] = field(default_factory=list)


class Ingester:
    """Turns scored items into stored rows; ``on_alerts`` hears of every alert a commit raised."""

    def __init__(self, store: Store, polarity: Polarity, model_version: str, index: IndexSettings, rules: AlertRules,
                 tagger: Tagger | None = None, on_alerts: Callable[[list[Alert]], None] = lambda alerts: None):
        self.store, self.polarity, self.model_version = store, polarity, model_version
        self.index, self.rules, self.tagger, self.on_alerts = index, rules, tagger, on_alerts

    def new_items(self, batch: Sequence[Item]) -> list[Item]:
        """The items whose id is neither stored nor earlier in ``batch`` (only these need scoring)."""
        unique: dict[str, Item] = {}
        for item in batch:
            unique.setdefault(item.id, item)
        known = self.store.existing_ids(list(unique))
        return [item for i, item in unique.items() if i not in known]

    def commit(self, batch: Sequence[Item], probabilities: np.ndarray, position: Position | None = None) -> Outcome:
        """Store ``batch`` (new items, scored) and ``position``; duplicates = the items not inserted."""
        labels = self.polarity.labels
        sentiment = self.polarity.sentiment(probabilities) if len(batch) else np.zeros(0)
        best = probabilities.argmax(axis=1) if len(batch) else np.zeros(0, dtype=int)
        rows = []
        for item, probs, s, b in zip(batch, probabilities.tolist(), sentiment.tolist(), best.tolist()):
            entities = (item.entity,) if item.entity else tuple(self.tagger.tag(item.text)) if self.tagger else ()
            rows.append(Row(item.id, item.ts, item.timestamp, item.text, item.source, entities, labels[b], probs[b], s,
                            {label: round(p, 6) for label, p in zip(labels, probs)},
                            b == self.polarity.negative, b == self.polarity.positive))
        inserted, raised = self.store.write_batch(rows, model_version=self.model_version, windows=self.index.spans,
                                                  rules=self.rules, position=position)
        if raised:
            self.on_alerts(raised)
        return Outcome(len(inserted), len(batch) - len(inserted), raised)


@dataclass
class Tally:
    lines: int = 0
    inserted: int = 0
    duplicates: int = 0
    malformed: int = 0
    alerts: int = 0
    resumed_at_line: int = 0


def resume_point(store: Store, path: str) -> tuple[str | None, Position | None]:
    """The position key of a file input and where its last run committed (None: start at the beginning)."""
    if path == "-":
        return None, None
    source = str(Path(path).resolve())
    pos = store.position(source)
    if pos is None or Path(path).stat().st_size < pos.offset or file_identity(Path(path), pos.offset) != pos.identity:
        return source, None  # new, or replaced by another file: read it from the start (ids keep it idempotent)
    return source, pos


def run_stream(ingester: Ingester, score: Scorer, reader: InputReader, *, fmt: str, batch_size: int,
               source: str | None, resumed: Position | None, on_malformed: Callable[[int, str], None],
               on_batch: Callable[[Tally, int], None] = lambda tally, offset: None) -> Tally:
    """Read ``reader`` to its end (or until its stop event), committing every ``batch_size`` items and
    whenever input pauses. ``on_batch(tally, offset)`` after each commit."""
    tally = Tally(lines=resumed.line if resumed else 0, resumed_at_line=resumed.line if resumed else 0)
    parser = None
    if resumed is not None and fmt == "csv":  # the header is behind the resume point
        parser = _csv(first_line(Path(source)), 1)
    pending: list[Item] = []
    safe: Line | None = None  # the last line wholly consumed
    committed: Line | None = None

    def flush() -> None:
        nonlocal pending, committed
        if not pending and safe is committed:
            return
        new = ingester.new_items(pending)
        probs = score([i.text for i in new]) if new else np.zeros((0, len(ingester.polarity.labels)), np.float32)
        position = None
        if source is not None and safe is not None:
            position = Position(source, file_identity(Path(source), safe.end), safe.end, safe.number)
        out = ingester.commit(new, probs, position)
        tally.inserted += out.inserted
        tally.duplicates += len(pending) - out.inserted
        tally.alerts += len(out.alerts)
        pending, committed = [], safe
        on_batch(tally, safe.end if safe is not None else 0)

    for line in reader.lines():
        if line is None:
            flush()
            continue
        tally.lines = line.number
        if parser is None:
            if not line.data.strip():
                safe = line
                continue
            if fmt == "csv" or (fmt == "auto" and not line.data.lstrip().startswith(b"{")):
                parser = _csv(line.data, line.number)
                safe = line
                continue
            parser = JsonLinesParser()
        try:
            item = parser.feed(line.data)
        except Malformed as e:
            tally.malformed += 1
            on_malformed(line.number, str(e))
        else:
            if item is not None:
                pending.append(item)
        if not parser.pending():
            safe = line
        if len(pending) >= batch_size:
            flush()
    flush()
    return tally


def _csv(header: bytes, number: int) -> CsvParser:
    try:
        return CsvParser(header)
    except Malformed as e:
        raise UserError(f"--input line {number}: {e}; a CSV input starts with a header such as id,timestamp,text,entity,source") from None
