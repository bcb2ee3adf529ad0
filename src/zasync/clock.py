"""The one clock and the one sleep function zasync uses.

Everything that needs "now" calls :func:`utcnow`, and everything that waits
calls :func:`sleep`, so tests can pin and move time (:func:`set_now`) and make
backoffs instant (:func:`set_sleep`) without patching modules.

Times that other processes compare (a job's ``begin_after`` and deadline, the
completion times pruning goes by) should agree between machines whose clocks
may not.  So :func:`utcnow` is the machine's clock corrected by an estimate of
how far the database's clock is from it: the database server chooses each
commit's transaction id from its own clock, and :func:`note_commit` compares
the id of a commit this process made with the local time just after it.  Each
such sample can only be early (by the commit's latency), never late, so the
estimate is the latest of the last few samples.  Until a process has
committed anything, its times are its clock's own.
"""

from __future__ import annotations

import collections
import datetime
import logging
import threading
import time
from collections.abc import Callable

from zasync.errors import InvalidValueError, NaiveDatetimeError

UTC = datetime.UTC

#: Clocks may differ by this much without harm before a process has measured
#: how far its clock is from the database's; a larger difference is logged.
SKEW_BOUND = datetime.timedelta(seconds=30)
#: How long a measurement of the offset counts.  Each is a lower bound (the
#: commit's id was chosen before this process read its clock), too low by
#: however long the process took to read it: a busy process (a worker
#: draining a queue) measures late.  The best bound of this window is used, so
#: one measurement made while idle outweighs any number made under load, and
#: a clock that was stepped is followed within the window.
SAMPLE_WINDOW = datetime.timedelta(minutes=10)
_SAMPLES = 256

_lock = threading.Lock()
_pinned: datetime.datetime | None = None
_sleep: Callable[[float], None] = time.sleep
#: (local time of the measurement, measured offset), oldest first.
_samples: collections.deque[tuple[datetime.datetime, datetime.timedelta]] = collections.deque(
    maxlen=_SAMPLES
)
_offset = datetime.timedelta(0)
_warned = False
_last_tid = b""

log = logging.getLogger("zasync.events")
# The class itself, kept: tests skew the clock by replacing this module's ``datetime``.
_DATETIME = datetime.datetime


def utcnow() -> datetime.datetime:
    """Return the current time as an aware UTC datetime, in the database's time as far as known.

    Pinned in tests (:func:`set_now`): then exactly the pinned value.
    """
    pinned = _pinned
    if pinned is not None:
        return pinned
    return local_now() + _offset


def local_now() -> datetime.datetime:
    """This machine's clock, uncorrected."""
    return datetime.datetime.now(UTC)


def offset() -> datetime.timedelta | None:
    """The database's clock minus this machine's, as estimated; None until measured."""
    return _offset if _samples else None


def tid_time(tid: bytes) -> datetime.datetime:
    """The time a ZODB transaction id encodes: its commit time by the database's clock."""
    from ZODB.TimeStamp import TimeStamp

    return datetime.datetime.fromtimestamp(TimeStamp(tid).timeTime(), UTC)


def note_commit(tid: bytes, after: datetime.datetime) -> None:
    """Learn the clock's offset from a commit of this process.

    ``tid`` is the commit's transaction id, ``after`` :func:`local_now` just
    after the commit returned.  Ignored while the clock is pinned (tests' virtual time).
    """
    global _offset, _warned, _last_tid
    if _pinned is not None or tid == b"\0" * 8:
        return
    sample = tid_time(tid) - after
    with _lock:
        if tid <= _last_tid:  # noted already (or older): only a new commit says anything
            return
        _last_tid = tid
        while _samples and after - _samples[0][0] > SAMPLE_WINDOW:
            _samples.popleft()
        _samples.append((after, sample))
        _offset = max(offset for _when, offset in _samples)
        warn = abs(_offset) > SKEW_BOUND and not _warned
        _warned = _warned or warn
    if warn:
        ahead = -_offset.total_seconds()
        log.warning(
            "this machine's clock differs from the database's by %.1f s (%s; more than the "
            "%d s zasync tolerates before measuring it): zasync corrects its times by the "
            "difference it measures, but fix the clock (NTP)",
            abs(ahead),
            "ahead" if ahead > 0 else "behind",
            SKEW_BOUND.total_seconds(),
        )


def forget_offset() -> None:
    """Forget the measured offset (tests)."""
    global _offset, _warned, _last_tid
    with _lock:
        _last_tid = b""
        _samples.clear()
        _offset = datetime.timedelta(0)
        _warned = False


def set_now(value: datetime.datetime) -> None:
    """Pin the clock at ``value`` (an aware datetime) until :func:`reset_now`."""
    global _pinned
    if value.tzinfo is None:
        raise NaiveDatetimeError(
            "cannot use timezone-naive values: give the datetime a time zone "
            "(datetime.now(UTC), or .replace(tzinfo=UTC))"
        )
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


def absolute(value: datetime.datetime | datetime.timedelta) -> datetime.datetime:
    """A time given as an aware datetime, or as a timedelta from :func:`utcnow`, in UTC.

    Naive datetimes raise NaiveDatetimeError, as in :func:`to_utc`; anything
    else raises InvalidValueError (a job's argument passed where ``put``
    expects its start time, say).
    """
    if isinstance(value, datetime.timedelta):
        return utcnow() + value
    if not isinstance(value, _DATETIME):
        raise InvalidValueError(
            f"a start time must be an aware datetime or a timedelta, not {type(value).__name__}"
            " (pass a job's arguments with Job(callable, *args))"
        )
    return to_utc(value)


def to_utc(value: datetime.datetime, *, naive_is_utc: bool = False) -> datetime.datetime:
    """Convert an aware datetime to UTC; naive values raise NaiveDatetimeError unless allowed."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        if not naive_is_utc:
            raise NaiveDatetimeError(
                "cannot use timezone-naive values: give the datetime a time zone "
                "(datetime.now(UTC), or .replace(tzinfo=UTC))"
            )
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
