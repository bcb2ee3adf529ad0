"""Durations and times as people type them on a command line: ``90s``, ``5m``, ``1h30m``."""

from __future__ import annotations

import datetime
import re

from zasync import clock

_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])", re.IGNORECASE)
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str) -> datetime.timedelta:
    """``'1h30m'`` -> 1:30:00.  Units d, h, m, s; a bare number means seconds."""
    text = text.strip()
    try:
        return datetime.timedelta(seconds=float(text))
    except ValueError:
        pass
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts).lower() != text.lower():
        raise ValueError(f"not a duration: {text!r} (use forms like 90s, 5m, 1h30m, 2d)")
    total = datetime.timedelta()
    for number, unit in parts:
        total += datetime.timedelta(**{_UNITS[unit.lower()]: float(number)})
    return total


def parse_time(text: str) -> datetime.datetime:
    """An ISO time with a time zone (``2026-01-01T09:00+01:00``), or a duration from now."""
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError:
        return clock.utcnow() + parse_duration(text)
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; add one, e.g. +00:00 or Z")
    return value.astimezone(datetime.UTC)
