"""Input read by byte position: a file (resumable at a committed offset, optionally followed as it grows)
or stdin (a pipe: read until it closes).

``lines()`` yields each complete line with its number and the byte offset just after it, and ``None``
whenever no more input is there for now (the caller commits what it holds, so nothing waits for a full
batch). Files are polled at a bounded interval while followed; pipes are waited on with select.
"""

from __future__ import annotations

import hashlib
import os
import select
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from acceltune.errors import UserError

CHUNK = 1 << 16
IDENTITY_BYTES = 4096  # a file is known by a hash of its first bytes (up to the committed offset)


@dataclass(frozen=True, slots=True)
class Line:
    number: int
    data: bytes
    end: int  # byte offset just after the line


def file_identity(path: Path, upto: int) -> str:
    """A hash of the file's first min(upto, IDENTITY_BYTES) bytes: stable while a file only grows, different
    for a replaced or rotated file."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read(min(upto, IDENTITY_BYTES))).hexdigest()


def first_line(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.readline()


class InputReader:
    """``path`` "-" is stdin. ``start``/``start_line``: where a previous run committed (files only)."""

    def __init__(self, path: str, *, follow: bool, poll_s: float, stop: threading.Event, start: int = 0,
                 start_line: int = 0):
        self.stdin = path == "-"
        self.follow = follow
        self.poll_s = poll_s
        self.stop = stop
        if self.stdin:
            self.fd = 0
        else:
            p = Path(path)
            if not p.is_file():
                raise UserError(f"--input {path}: no such file")
            self.fd = os.open(p, os.O_RDONLY)
            os.lseek(self.fd, start, os.SEEK_SET)
        self.pipe = not stat.S_ISREG(os.fstat(self.fd).st_mode)
        self.offset = start
        self.line = start_line

    def close(self) -> None:
        if not self.stdin:
            os.close(self.fd)

    def _read(self) -> bytes | None:
        """A chunk; b"" at the end of input; None when nothing is there for now."""
        if self.pipe:
            ready, _, _ = select.select([self.fd], [], [], self.poll_s)
            if not ready:
                return None
            return os.read(self.fd, CHUNK)
        chunk = os.read(self.fd, CHUNK)
        if chunk or not self.follow:
            return chunk
        return None

    def lines(self) -> Iterator[Line | None]:
        buf = b""
        while not self.stop.is_set():
            chunk = self._read()
            if chunk is None:
                yield None
                if not self.pipe:
                    self.stop.wait(self.poll_s)  # a followed file: poll again after the interval
                continue
            if not chunk:  # the end: a last line without a newline is still a line
                if buf:
                    self.line += 1
                    self.offset += len(buf)
                    yield Line(self.line, buf, self.offset)
                return
            buf += chunk
            start = 0
            while (nl := buf.find(b"\n", start)) >= 0:
                data = buf[start:nl + 1]
                start = nl + 1
                self.line += 1
                self.offset += len(data)
                yield Line(self.line, data, self.offset)
            buf = buf[start:]
