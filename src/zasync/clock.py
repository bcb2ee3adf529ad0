"""The one clock and the one sleep function zasync uses.

Everything that needs "now" calls :func:`utcnow`, and everything that waits
calls :func:`sleep`, so tests can pin and move time (:func:`set_now`) and make
backoffs instant (:func:`set_sleep`) without patching modules.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable

UTC = datetime.UTC

_lock = threading.Lock()
_pinned: datetime.datetime | None = None
_sleep: Callable[[float], None] = time.sleep


def utcnow() -> datetime.datetime:
    """Return the current time as an aware UTC datetime (pinned in tests)."""
    pinned = _pinned
    if pinned is not None:
        return pinned
    return datetime.datetime.now(UTC)


def set_now(value: datetime.datetime) -> None:
    """Pin the clock at ``value`` (an aware datetime) until :func:`reset_now`."""
    global _pinned
    if value.tzinfo is None:
        raise ValueError("cannot use timezone-naive values")
    with _lock:
        _pinned = value.astimezone(UTC)


def advance(delta: datetime.timedelta) -> datetime.datetime:
    """Move a pinned clock forward by ``delta`` and return the new time."""
    global _pinned
    with _lock:
        if _pinned is None:
            raise RuntimeError("the clock is not pinned; call set_now() first")
        _pinned = _pinned + delta
        return _pinned


def reset_now() -> None:
    """Return to the real clock."""
    global _pinned
    with _lock:
        _pinned = None


def is_pinned() -> bool:
    """True while the clock is pinned by :func:`set_now`."""
    return _pinned is not None


def sleep(seconds: float) -> None:
    """Wait ``seconds`` through the replaceable sleep function (used by backoffs)."""
    if seconds > 0:
        _sleep(seconds)


def set_sleep(function: Callable[[float], None] | None) -> None:
    """Replace the sleep function; None restores ``time.sleep``."""
    global _sleep
    _sleep = time.sleep if function is None else function


def to_utc(value: datetime.datetime, *, naive_is_utc: bool = False) -> datetime.datetime:
    """Convert an aware datetime to UTC; naive values raise ValueError unless allowed."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        if not naive_is_utc:
            raise ValueError("cannot use timezone-naive values")
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)


def to_stamp(value: datetime.datetime) -> int:
    """An aware datetime as integer microseconds since the epoch (UTC), for storage.

    Jobs store their times this way: an int pickles several times more
    cheaply than a datetime, and a job is pickled at every commit it joins.
    """
    return (value - _EPOCH) // _MICROSECOND


def from_stamp(value: int | None) -> datetime.datetime | None:
    """The aware UTC datetime of a :func:`to_stamp` value (None stays None)."""
    return None if value is None else _EPOCH + value * _MICROSECOND
