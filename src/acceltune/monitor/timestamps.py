"""Timestamps: RFC 3339 (ISO 8601 with a zone) in, integer epoch milliseconds stored, ISO 8601 UTC out.

One strict rule for files and the HTTP API alike: ``YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)``. Milliseconds
are computed from the fields, so every RFC 3339 value (year 0001 with a positive offset included) has one.
"""

from __future__ import annotations

import re
from datetime import date, datetime

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY_MS = 86_400_000
_CYCLE_DAYS = 146_097  # days in 400 Gregorian years: shifting by it keeps month and day


def parse_ms(value: str) -> int:
    """Epoch milliseconds of an RFC 3339 timestamp; ValueError naming the rule otherwise."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("timestamp must be ISO 8601 with a zone, e.g. 2024-05-01T09:30:00Z or 2024-05-01T11:30:00+02:00")
    try:
        dt = datetime.fromisoformat(value.upper())
    except ValueError as e:
        raise ValueError(f"timestamp {value!r} is not a valid date and time ({e})") from None
    offset = dt.utcoffset()
    local_ms = ((dt.toordinal() - _EPOCH_ORDINAL) * _DAY_MS + dt.hour * 3_600_000 + dt.minute * 60_000
                + dt.second * 1000 + dt.microsecond // 1000)
    return local_ms - (offset.days * _DAY_MS + offset.seconds * 1000)


def format_ms(ms: int) -> str:
    """ISO 8601 in UTC (``...Z``) of epoch milliseconds, also for the few beyond datetime's years 1-9999."""
    days, rest = divmod(ms, _DAY_MS)
    ordinal = days + _EPOCH_ORDINAL
    shift = 0
    if ordinal < 1:
        ordinal, shift = ordinal + _CYCLE_DAYS, -400
    elif ordinal > date.max.toordinal():
        ordinal, shift = ordinal - _CYCLE_DAYS, 400
    d = date.fromordinal(ordinal)
    seconds, millis = divmod(rest, 1000)
    return (f"{d.year + shift:04d}-{d.month:02d}-{d.day:02d}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:"
            f"{seconds % 60:02d}.{millis:03d}Z")


def parse_duration_s(value: str) -> int:
    """Seconds of a window such as 15m, 1h, 1d, 7d."""
    m = re.fullmatch(r"([1-9]\d*)([smhd])", value.strip())
    if not m:
        raise ValueError(f"window {value!r} must be a number and a unit: 30s, 15m, 1h, 1d")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
