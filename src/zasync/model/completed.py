"""An agent's completed jobs, newest first, kept for a retention window.

Jobs are keyed by a 64-bit integer that decreases as time passes
(:func:`dt_to_long`), so iteration runs from the newest to the oldest and the
oldest jobs sit at the end, where :meth:`CompletedCollection.prune` cuts them
off.  ``add`` prunes a bounded number of expired jobs each time, so the
collection stays bounded without a separate sweeper.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

from BTrees.Length import Length
from BTrees.LOBTree import LOBTree
from zope.interface import implementer

from zasync import clock
from zasync.errors import ConfigurationError, NoCompletedJobsError
from zasync.interfaces import ICompletedCollection
from zasync.model._base import Base

_MAX = datetime.datetime.max.replace(tzinfo=datetime.UTC)
DEFAULT_RETENTION = datetime.timedelta(days=7)
PRUNE_BATCH = 100


def dt_to_long(dt: datetime.datetime) -> int:
    """Encode ``dt`` as an integer that is smaller for later times; the low 4 bits are 0."""
    delta = _MAX - clock.to_utc(dt)
    return (delta.days << 41) | (delta.seconds << 24) | (delta.microseconds << 4)


def completion_key(dt: datetime.datetime) -> int:
    """The first key a job completed at ``dt`` tries in a completed collection."""
    return dt_to_long(dt) + 15


def long_to_dt(value: int) -> datetime.datetime:
    """Decode :func:`dt_to_long` (ignoring the low 4 tie-breaking bits)."""
    days = value >> 41
    seconds = (value >> 24) & ((1 << 17) - 1)
    microseconds = (value >> 4) & ((1 << 20) - 1)
    return _MAX - datetime.timedelta(days=days, seconds=seconds, microseconds=microseconds)


@implementer(ICompletedCollection)
class CompletedCollection(Base):
    """Completed jobs of one agent; see ICompletedCollection."""

    def __init__(self, retention: datetime.timedelta = DEFAULT_RETENTION) -> None:
        self.retention = retention
        self._data = LOBTree()
        self._length = Length()

    @property
    def retention(self) -> datetime.timedelta:
        return self._retention

    @retention.setter
    def retention(self, value: datetime.timedelta) -> None:
        if not isinstance(value, datetime.timedelta) or value <= datetime.timedelta(0):
            raise ConfigurationError(f"retention must be a positive timedelta, not {value!r}")
        self._retention = value

    period = retention

    def add(self, job: Any) -> None:
        """File a completed job: set its ``key`` and ``parent`` (the agent).

        A job that completed in a worker thread already carries the key of its
        completion time (set in its result commit); it keeps it when it is
        free, so filing does not write the job again.
        """
        now = clock.utcnow()
        key = job.key or completion_key(now)
        while (present := self._data.get(key)) is not None:
            if present is job:
                return  # filed already
            key -= 1
        self._data[key] = job
        self._length.change(1)
        if job.key != key:
            job.key = key
        if job.parent is not self.parent:
            job.parent = self.parent
        self.prune(now, limit=PRUNE_BATCH)

    def prune(self, now: datetime.datetime | None = None, limit: int | None = None) -> int:
        """Remove up to ``limit`` jobs completed before ``now - retention``; return how many."""
        if not self._data:
            return 0
        cutoff = dt_to_long((now or clock.utcnow()) - self._retention)
        if self._data.maxKey() < cutoff:
            return 0
        doomed = []
        for key in self._data.keys(min=cutoff, excludemin=True):
            doomed.append(key)
            if limit is not None and len(doomed) >= limit:
                break
        for key in doomed:
            del self._data[key]
        self._length.change(-len(doomed))
        return len(doomed)

    def __len__(self) -> int:
        return int(self._length())

    def __bool__(self) -> bool:
        return bool(self._data)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data.values())

    def iter(
        self, start: datetime.datetime | None = None, stop: datetime.datetime | None = None
    ) -> Iterator[Any]:
        """Jobs filed at or before ``start`` and at or after ``stop``, newest first."""
        low = None if start is None else dt_to_long(start)
        high = None if stop is None else dt_to_long(stop) + 15
        return iter(self._data.values(min=low, max=high))

    def first(self, start: datetime.datetime | None = None) -> Any:
        """The newest job (filed at or before ``start``); ValueError when there is none."""
        for job in self.iter(start=start):
            return job
        raise NoCompletedJobsError("no completed jobs")

    def last(self, stop: datetime.datetime | None = None) -> Any:
        """The oldest job (filed at or after ``stop``); ValueError when there is none."""
        high = None if stop is None else dt_to_long(stop) + 15
        try:
            key = self._data.maxKey(high) if high is not None else self._data.maxKey()
        except ValueError:
            raise NoCompletedJobsError("no completed jobs") from None
        return self._data[key]

    def clear(self) -> None:
        """Remove every job."""
        count = len(self._data)
        self._data.clear()
        self._length.change(-count)
