"""Rate limits: at most N starts per period for the jobs that name a limit, across all workers.

A quota limits how many jobs run *at once*; a rate limit how many *start*
within any window of its period.  A queue keeps its limits by name
(``Queue._rate_limits``, made by the first one); a job names the limits it
counts against (``put(job, rate_limits=["mail"])``), several if need be.

**Exact, cluster-wide.**  A claim of a limited job records its start in the
limit's object, in the claim's own transaction.  Two workers claiming limited
jobs at the same moment both change that object; one commit conflicts, and
its retry sees the other start.  A limit keeps the start times of its latest
N starts, never decreasing (a start is recorded at the later of the claim's
time and the latest start): a new start is allowed only once the N-th latest
is a whole period old, so no window of the period ever holds more than N.

A start is counted when the job is claimed: a worker marks the jobs it claims
ahead as started then (their ``active_start``), so the limit holds for those
times.  A job refused by a full limit keeps its place, as with a full quota.
"""

from __future__ import annotations

import datetime
import math
from typing import Any, Final

from BTrees.OOBTree import OOBTree

from zasync import clock
from zasync.errors import ConfigurationError, InvalidValueError
from zasync.model._base import Base, MappingBase

MAX_COUNT: Final = 100_000
MAX_PERIOD: Final = 366 * 86400.0


def _check(count: Any, per: Any) -> tuple[int, float]:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise InvalidValueError(
            f"a rate limit's count is a whole number from 1 to {MAX_COUNT}, not {count!r:.40}"
        )
    if isinstance(per, datetime.timedelta):
        per = per.total_seconds()
    if isinstance(per, bool) or not isinstance(per, int | float) or not math.isfinite(per):
        raise InvalidValueError(f"a rate limit's period is a number of seconds, not {per!r:.40}")
    if not 0.001 <= per <= MAX_PERIOD:
        raise InvalidValueError(
            f"a rate limit's period must be from 0.001 to {MAX_PERIOD:g} seconds, not {per!r}"
        )
    return count, float(per)


class RateLimit(Base):
    """At most ``count`` starts in any window of ``per`` seconds."""

    def __init__(self, name: str, count: int, per: float | datetime.timedelta) -> None:
        self.name = name
        self.count, self.per = _check(count, per)
        self._starts: tuple[int, ...] = ()  # microseconds, never decreasing, at most count

    def _period_us(self) -> int:
        return round(self.per * 1_000_000)

    def latest(self) -> datetime.datetime:
        """The latest start recorded (the epoch if none): no start is recorded before it."""
        found = clock.from_stamp(self._starts[-1] if self._starts else 0)
        assert found is not None
        return found

    def admits(self, now: datetime.datetime) -> bool:
        """True if a job may start now without exceeding the limit."""
        starts = self._starts
        if len(starts) < self.count:
            return True
        stamp = max(clock.to_stamp(now), starts[-1])
        return stamp - starts[-self.count] >= self._period_us()

    def take(self, now: datetime.datetime) -> datetime.datetime:
        """Record a start now (call :meth:`admits` first); the time recorded."""
        stamp = clock.to_stamp(now)
        if self._starts:
            stamp = max(stamp, self._starts[-1])
        self._starts = (*self._starts, stamp)[-self.count :]
        recorded = clock.from_stamp(stamp)
        assert recorded is not None
        return recorded

    def next_free(self, now: datetime.datetime) -> datetime.datetime:
        """When the next start will be allowed (now, if it is allowed now)."""
        if self.admits(now):
            return now
        free = clock.from_stamp(self._starts[-self.count] + self._period_us())
        assert free is not None
        return free

    def used(self, now: datetime.datetime) -> int:
        """How many starts fall in the period before ``now``."""
        since = clock.to_stamp(now) - self._period_us()
        return sum(1 for stamp in self._starts if stamp > since)

    def change(self, count: int, per: float | datetime.timedelta) -> None:
        """Set a new count and period; the starts recorded so far still count."""
        self.count, self.per = _check(count, per)
        self._starts = self._starts[-self.count :]

    def __repr__(self) -> str:
        return f"<RateLimit {self.name!r} {self.count} per {self.per:g} s>"


class RateLimits(MappingBase):
    """The rate limits of a queue, by name."""

    def __init__(self, queue: Any = None) -> None:
        self.parent = queue
        self._data = OOBTree()

    def set(self, name: str, count: int, per: float | datetime.timedelta) -> RateLimit:
        """Create the limit ``name``, or change its count and period; return it."""
        if not isinstance(name, str) or not name or len(name) > 200 or not name.isprintable():
            raise ConfigurationError(
                f"a rate limit's name is a string of 1 to 200 characters, not {name!r:.60}"
            )
        limit: RateLimit | None = self._data.get(name)
        if limit is None:
            limit = RateLimit(name, count, per)
            limit.parent = self
            self._data[name] = limit
        else:
            limit.change(count, per)
        return limit

    def remove(self, name: str) -> None:
        """Delete a limit (KeyError if missing); jobs still naming it are no longer limited."""
        limit = self._data[name]
        del self._data[name]
        limit.parent = None
