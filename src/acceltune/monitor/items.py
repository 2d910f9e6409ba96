"""News items and how a line of input becomes one.

An item is ``id``, ``timestamp`` (ISO 8601 with a zone), ``text``, and optionally ``entity`` (skips tagging)
and ``source``. Input is JSON Lines (one object per line) or CSV (a header line naming the columns; a quoted
field may span lines). A line that cannot be an item raises ``Malformed`` with the reason; the caller
counts and reports it with its line number and goes on.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

import orjson

from acceltune.monitor.timestamps import parse_ms

MAX_ID = 200  # characters of id, entity and source: indexed columns stay small
REQUIRED = ("id", "timestamp", "text")
BLANK = " \t\n\r\f\v"  # a text of only these (ASCII whitespace) is empty; the API's schema states the same


class Malformed(ValueError):
    """This input cannot be an item (the message says why)."""


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    ts: int  # epoch milliseconds, UTC
    timestamp: str  # as given
    text: str
    entity: str | None = None
    source: str | None = None


def _short(name: str, value, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise Malformed(f"empty {name}")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Malformed(f"{name} must be a string")
    value = str(value)
    if len(value) > MAX_ID:
        raise Malformed(f"{name} is longer than {MAX_ID} characters")
    if "\x00" in value:
        raise Malformed(f"{name} contains a NUL character")
    return value


def item_from_record(record) -> Item:
    """An Item from a parsed JSON object or CSV row."""
    if not isinstance(record, dict):
        raise Malformed("not a JSON object")
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise Malformed(f"missing field {', '.join(missing)}")
    text = record["text"]
    if not isinstance(text, str):
        raise Malformed("text must be a string")
    if not text.strip(BLANK):
        raise Malformed("empty text")
    if "\x00" in text:
        raise Malformed("text contains a NUL character")
    timestamp = record["timestamp"]
    try:
        ts = parse_ms(timestamp)
    except ValueError as e:
        raise Malformed(f"bad timestamp {timestamp!r}: {e}") from None
    return Item(id=_short("id", record["id"], required=True), ts=ts, timestamp=timestamp, text=text,
                entity=_short("entity", record.get("entity"), required=False),
                source=_short("source", record.get("source"), required=False))


class JsonLinesParser:
    """One JSON object per line."""

    def feed(self, line: bytes) -> Item | None:
        """The line's item; None for a blank line."""
        if not line.strip():
            return None
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise Malformed("not JSON") from None
        return item_from_record(record)

    def pending(self) -> bool:
        return False


class CsvParser:
    """CSV with a header line. A record whose quotes are still open waits for the next line (quoted newlines)."""

    def __init__(self, header: bytes):
        columns = next(csv.reader([_decode(header)]), [])
        columns = [c.strip() for c in columns]
        missing = [k for k in REQUIRED if k not in columns]
        if missing:
            raise Malformed(f"the CSV header has no column {', '.join(missing)} (it has {', '.join(columns) or 'none'})")
        self.columns = columns
        self._open: list[str] = []

    def feed(self, line: bytes) -> Item | None:
        text = _decode(line)
        self._open.append(text)
        record_text = "".join(self._open)
        if record_text.count('"') % 2:  # inside a quoted field: the record goes on on the next line
            return None
        self._open = []
        if not record_text.strip():
            return None
        row = next(csv.reader([record_text]))
        if len(row) != len(self.columns):
            raise Malformed(f"{len(row)} fields where the header has {len(self.columns)}")
        return item_from_record(dict(zip(self.columns, row)))

    def pending(self) -> bool:
        """A quoted field is open: the lines fed since the last record are not yet an item."""
        return bool(self._open)


def _decode(line: bytes) -> str:
    try:
        return line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Malformed("not UTF-8") from None
