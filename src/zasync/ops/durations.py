"""Durations and times as people type them on a command line: ``90s``, ``5m``, ``1h30m``."""

from __future__ import annotations

import datetime
import math
import re

from zasync import clock
from zasync.errors import InvalidValueError

_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])", re.IGNORECASE)
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}

#: The longest duration accepted: anything longer is a typing mistake, and far
#: longer ones overflow the dates they are added to.
MAX_DURATION = datetime.timedelta(days=36525)
_USE = "use forms like 90s, 5m, 1h30m, 2d"


def parse_duration(text: str) -> datetime.timedelta:
    """``'1h30m'`` -> 1:30:00.  Units d, h, m, s; a bare number means seconds.

    ValueError for anything else, and for negative, infinite or longer than
    :data:`MAX_DURATION` (100 years) durations.
    """
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _PART.findall(text)
        if not parts or "".join(n + u for n, u in parts).lower() != text.lower():
            raise InvalidValueError(f"not a duration: {text!r} ({_USE})") from None
        seconds = sum(
            datetime.timedelta(**{_UNITS[u.lower()]: 1}).total_seconds() * float(n)
            for n, u in parts
        )
    if math.isnan(seconds) or seconds < 0:
        raise InvalidValueError(f"not a duration: {text!r} (durations are >= 0; {_USE})")
    if seconds > MAX_DURATION.total_seconds():
        raise InvalidValueError(
            f"duration too long: {text!r} (at most {MAX_DURATION.days}d, 100 years)"
        )
    return datetime.timedelta(seconds=seconds)


def parse_time(text: str) -> datetime.datetime:
    """An ISO time with a time zone (``2026-01-01T09:00+01:00``), or a duration from now.

    ValueError for a time more than :data:`MAX_DURATION` (100 years) ahead.
    """
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError:
        return clock.utcnow() + parse_duration(text)
    if value.tzinfo is None:
        raise InvalidValueError(f"{text!r} has no time zone; add one, e.g. +00:00 or Z")
    value = value.astimezone(datetime.UTC)
    if value - clock.utcnow() > MAX_DURATION:
        raise InvalidValueError(f"{text!r} is more than {MAX_DURATION.days}d (100 years) ahead")
    return value
