"""Periodic jobs: schedules stored in a queue, each tick producing exactly one job.

A :class:`Schedule` lives in its queue (``Queue._schedules``, an OOBTree made
on first use: name -> schedule) and says what to call, when (a cron
expression in a time zone, or a fixed interval), and what to do about ticks
that no worker was there to fire.

**Exactly once.**  A schedule's next tick is a pending *trigger* job in its
queue, due at the tick: ``Job(fire, schedule, tick)``.  Claims are exact, so
one worker claims it; :func:`fire` then, in the trigger's own transaction,
puts the work job(s) for the tick and the trigger of the next tick.  The
trigger's result commits with them: either all of it happens, or (a
conflict, a crash) none of it and the trigger runs again.  A worker that
dies while firing leaves the trigger to be retried by whichever worker takes
its jobs over; triggers retry for ever.  However many workers run, each tick
yields its jobs once.

**Missed ticks** (no worker ran, or all were busy) are handled per schedule,
when the trigger finally fires: ``"once"`` (the default) puts one job for
all the ticks missed together; ``"each"`` one job per tick (at most
:data:`MAX_CATCH_UP`); ``"skip"`` none for ticks more than ``grace`` seconds
late.  Either way the next trigger is due at the first tick after now.

Cron expressions are evaluated by cronsim, with Debian cron's rules across
daylight-saving changes: a time skipped when clocks go forward fires at the
change, a time that happens twice when they go back fires once (an
expression of several times an hour fires in both hours).
"""

from __future__ import annotations

import collections
import datetime
import logging
import math
import zoneinfo
from collections.abc import Callable, Iterator
from typing import Any, Final

from BTrees.OOBTree import OOBTree
from cronsim import CronSim, CronSimError

from zasync import clock
from zasync._logtext import one_line
from zasync.errors import InvalidValueError
from zasync.interfaces import ACTIVE, ASSIGNED, PENDING
from zasync.model._base import Base
from zasync.model._pickling import check_storable
from zasync.model.job import Job
from zasync.model.priority import MAX_PRIORITY, check_priority
from zasync.model.quarantine import load_error
from zasync.model.timelimit import check_timeout
from zasync.model.tx import TRANSACTION_ERRORS, system_errors
from zasync.schema import SCHEDULE_TICK

ONCE: Final = "once"
EACH: Final = "each"
SKIP: Final = "skip"
MISSED = (ONCE, EACH, SKIP)
#: The most jobs one firing puts for missed ticks (``missed="each"``): the newest ones.
MAX_CATCH_UP = 1000
#: The most missed ticks of a cron counted one by one (a year of minutes is half of it).
MAX_COUNTED = 1_000_000
#: The longest interval, and how far from now ``start`` may be.
MAX_SPAN = datetime.timedelta(days=3660)
MAX_NAME = 200
MIN_INTERVAL = 1.0
#: The options of the jobs a schedule puts (passed to ``Queue.put``).
JOB_OPTIONS = ("retry", "priority", "quota_names", "begin_by", "failure_log_level", "timeout")
#: Options of ``Queue.put`` that a schedule's jobs cannot take: refused rather than
#: passed on to the call as keyword arguments.
PUT_ONLY_OPTIONS = frozenset(
    {"begin_after", "unique_key", "unique_until", "after", "on_dependency_failure"}
    | {"retry_policy_factory"}
)


def _zone(name: Any) -> zoneinfo.ZoneInfo:
    if not isinstance(name, str) or not name:
        raise InvalidValueError(
            f"timezone must be a zone name such as 'Europe/Paris', not {name!r}"
        )
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidValueError(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC' or 'Europe/Paris'"
        ) from None


def _check_cron(expression: Any) -> str:
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidValueError(f"cron must be a cron expression, not {expression!r:.60}")
    text = " ".join(expression.split())
    if len(text.split()) != 5 and not text.startswith("@"):
        raise InvalidValueError(
            f"a cron expression has five fields (minute hour day month weekday), not {text!r}"
        )
    try:
        CronSim(text, datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC))
    except CronSimError as e:
        raise InvalidValueError(f"bad cron expression {text!r}: {e}") from None
    return text


def _seconds(value: Any, name: str, low: float) -> float:
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidValueError(f"{name} must be a number of seconds or a timedelta, not {value!r}")
    if value < low:
        raise InvalidValueError(f"{name} must be at least {low:g} seconds, not {value!r}")
    return float(value)


class Schedule(Base):
    """When and what a periodic job runs; stored in its queue under its name.

    Make one with :func:`add_schedule`; change it by removing and adding it
    again.  ``next_run`` is when its next tick fires.
    """

    _paused: bool = False
    _runs: int = 0
    _last_tick: int | None = None
    _last_job: Any = None
    _trigger: Any = None
    _last_error: str | None = None
    _quiet: int = 0  # ticks at or before this time (resumed at) put no job

    def __init__(
        self,
        name: str,
        call: Job[Any],
        cron: str | None,
        every: float | None,
        timezone: str,
        missed: str,
        grace: float,
        options: dict[str, Any],
        anchor: datetime.datetime,
    ) -> None:
        self.name = name
        self.call = call  # a NEW job in no queue: the template of the work jobs
        self.cron = cron
        self.every = every
        self.timezone = timezone
        self.missed = missed
        self.grace = grace
        self.options = dict(options)
        self._anchor = clock.to_stamp(anchor)
        self._next: int = self._anchor

    # -- what it says --------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """Whether ticks fire without putting jobs (see :func:`pause_schedule`)."""
        return self._paused

    @property
    def next_run(self) -> datetime.datetime:
        """When the next tick fires (an aware UTC datetime)."""
        found = clock.from_stamp(self._next)
        assert found is not None
        return found

    @property
    def last_tick(self) -> datetime.datetime | None:
        """The time of the last tick fired (UTC), or None."""
        return clock.from_stamp(self._last_tick)

    @property
    def runs(self) -> int:
        """How many jobs it has put."""
        return self._runs

    @property
    def last_job(self) -> Job[Any] | None:
        """The last job it put, or None."""
        return self._last_job  # type: ignore[no-any-return]

    def describe(self) -> str:
        """When it runs, in words: ``At 09:00 on Monday through Friday (Europe/Paris)``."""
        if self.cron is None:
            return f"every {self.every:g} s"
        text = CronSim(self.cron, datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)).explain()
        return f"{text} ({self.timezone})"

    # -- ticks ----------------------------------------------------------------------

    def ticks_after(self, after: datetime.datetime) -> Iterator[datetime.datetime]:
        """The tick times after ``after`` (strictly), in UTC, in order."""
        if self.every is not None:
            anchor = clock.from_stamp(self._anchor)
            assert anchor is not None
            step = datetime.timedelta(seconds=self.every)
            number = max(0, math.floor((after - anchor) / step) + 1)
            while True:
                yield anchor + number * step
                number += 1
        else:
            local = after.astimezone(_zone(self.timezone))
            for tick in CronSim(self.cron or "", local):
                found = tick.astimezone(datetime.UTC)
                # In the hour that happens twice, cronsim (working in local
                # time) may answer a time before ``after``: never go back.
                if found > after:
                    yield found

    def due_ticks(
        self, first: datetime.datetime, now: datetime.datetime
    ) -> tuple[int, list[datetime.datetime]]:
        """How many ticks fall from ``first`` (included) to ``now``, and the latest of them.

        At most :data:`MAX_CATCH_UP` ticks are returned (the newest); the
        count is exact for intervals and counts up to :data:`MAX_COUNTED`
        ticks of a cron.
        """
        if first > now:
            return 0, []
        if self.every is not None:
            step = datetime.timedelta(seconds=self.every)
            count = math.floor((now - first) / step) + 1
            kept = min(count, MAX_CATCH_UP)
            return count, [first + (count - kept + n) * step for n in range(kept)]
        latest: collections.deque[datetime.datetime] = collections.deque([first], MAX_CATCH_UP)
        count = 1
        for tick in self.ticks_after(first):
            if tick > now or count >= MAX_COUNTED:
                break
            latest.append(tick)
            count += 1
        return count, list(latest)

    def __repr__(self) -> str:
        return f"<zasync.Schedule {self.name!r}: {self.describe()}>"


# -- making and changing schedules ------------------------------------------------------


def add_schedule(
    queue: Any,
    name: str,
    call: Callable[..., Any] | Job[Any],
    *args: Any,
    cron: str | None = None,
    every: float | datetime.timedelta | None = None,
    timezone: str = "UTC",
    missed: str = ONCE,
    grace: float | datetime.timedelta = 60.0,
    start: datetime.datetime | None = None,
    **kwargs: Any,
) -> Schedule:
    """Add a schedule to ``queue`` in the caller's transaction and return it.

    ``call`` is a module-level function (or a Job) called with ``args`` and
    ``kwargs``; the keywords of :data:`JOB_OPTIONS` (``retry``, ``priority``,
    ...) are options of the jobs it puts rather than arguments.  Give either
    ``cron`` (an expression evaluated in ``timezone``) or ``every`` (seconds
    or a timedelta, at least one second, counted from ``start``, default
    now).  Bad values raise InvalidValueError and change nothing.
    """
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or not name.isprintable():
        raise InvalidValueError(
            f"a schedule's name is a string of 1 to {MAX_NAME} characters on one line, "
            f"not {name!r:.60}"
        )
    misplaced = sorted(set(kwargs) & PUT_ONLY_OPTIONS)
    if misplaced:
        raise InvalidValueError(
            f"{', '.join(misplaced)} cannot be given to a schedule's jobs (each tick puts "
            f"its job now); its job options are {', '.join(JOB_OPTIONS)}"
        )
    if start is not None and abs(clock.to_utc(start) - clock.utcnow()) > MAX_SPAN:
        raise InvalidValueError(f"start must be within {MAX_SPAN.days} days of now")
    if (cron is None) == (every is None):
        raise InvalidValueError("give a schedule either cron= or every=, not both nor neither")
    options = {k: kwargs.pop(k) for k in JOB_OPTIONS if k in kwargs}
    check_priority(options.get("priority"))
    cron_text = None if cron is None else _check_cron(cron)
    interval = None if every is None else _seconds(every, "every", MIN_INTERVAL)
    if interval is not None and interval > MAX_SPAN.total_seconds():
        raise InvalidValueError(f"every must be at most {MAX_SPAN.days} days")
    _zone(timezone)
    if missed not in MISSED:
        raise InvalidValueError(f"missed must be 'once', 'each' or 'skip', not {missed!r}")
    grace_seconds = _seconds(grace, "grace", 0.0)
    now = clock.utcnow()
    anchor = now if start is None else clock.to_utc(start)
    template = call if isinstance(call, Job) else Job(call, *args, **kwargs)
    check_storable(template)
    schedules = queue._schedules
    if schedules is not None and name in schedules:
        raise InvalidValueError(
            f"queue {queue.name!r} has a schedule named {name!r} already: remove it first"
        )
    _check_options(queue, options)
    schedule = Schedule(
        name, template, cron_text, interval, timezone, missed, grace_seconds, options, anchor
    )
    if cron_text is not None:
        schedule._next = clock.to_stamp(next(schedule.ticks_after(anchor - _EPSILON)))
    if schedules is None:
        schedules = queue._schedules = OOBTree()
    schedules[name] = schedule
    schedule.parent = queue
    queue._jar().add(schedule)
    _put_trigger(queue, schedule, schedule.next_run)
    return schedule


_EPSILON = datetime.timedelta(microseconds=1)


def _check_options(queue: Any, options: dict[str, Any]) -> None:
    """Refuse, before anything is stored, options that ``queue.put`` would refuse at a tick."""
    from zasync.model.backoff import retry_factory

    names = options.get("quota_names")
    if names is not None:
        if isinstance(names, str | bytes) or not all(isinstance(n, str) for n in names):
            raise InvalidValueError(f"quota_names is a list of quota names, not {names!r:.60}")
        options["quota_names"] = tuple(names)
        for name in options["quota_names"]:
            if name not in queue.quotas:
                raise InvalidValueError(f"unknown quota name {name!r}: create it first")
    begin_by = options.get("begin_by")
    if begin_by is not None and (
        not isinstance(begin_by, datetime.timedelta) or begin_by < datetime.timedelta(0)
    ):
        raise InvalidValueError(f"begin_by is a timedelta of 0 or more, not {begin_by!r:.60}")
    level = options.get("failure_log_level")
    if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
        raise InvalidValueError(f"failure_log_level is a logging level, not {level!r:.60}")
    if options.get("retry") is not None:
        options["retry"] = retry_factory(options["retry"])
    if options.get("timeout") is not None:
        options["timeout"] = check_timeout(options["timeout"])


def _put_trigger(queue: Any, schedule: Schedule, when: datetime.datetime) -> Job[Any]:
    trigger = Job(fire, schedule, clock.to_stamp(when))
    # The highest priority: a trigger is a short piece of bookkeeping, and
    # its tick should not wait behind urgent work.
    queue.put(trigger, begin_after=when, retry_policy_factory="forever", priority=MAX_PRIORITY)
    schedule._trigger = trigger
    schedule._next = clock.to_stamp(when)
    return trigger


def get_schedule(queue: Any, name: str) -> Schedule:
    """The schedule ``name`` of ``queue``; LookupError naming the known ones."""
    schedules = queue._schedules
    found = None if schedules is None else schedules.get(name)
    if found is None:
        known = ", ".join(map(repr, schedules.keys() if schedules is not None else [])) or "none"
        raise LookupError(f"queue {queue.name!r} has no schedule {name!r} (it has: {known})")
    return found  # type: ignore[no-any-return]


def schedules_of(queue: Any) -> list[Schedule]:
    """The schedules of ``queue``, by name."""
    return [] if queue._schedules is None else list(queue._schedules.values())


def pause_schedule(queue: Any, name: str) -> bool:
    """Let its ticks pass without putting jobs; True if it was running."""
    schedule = get_schedule(queue, name)
    if schedule._paused:
        return False
    schedule._paused = True
    return True


def resume_schedule(queue: Any, name: str) -> bool:
    """Let its ticks put jobs again (from the next tick on); True if it was paused.

    A schedule whose trigger was lost (cancelled, failed) gets a new one.
    """
    schedule = get_schedule(queue, name)
    now = clock.utcnow()
    changed = schedule._paused
    if changed:
        schedule._paused = False
        schedule._quiet = clock.to_stamp(now)
    if trigger_lost(queue, schedule):
        _put_trigger(queue, schedule, next(schedule.ticks_after(now)))
        changed = True
    return changed


def remove_schedule(queue: Any, name: str) -> Schedule:
    """Forget the schedule (its pending trigger goes too); the jobs it put stay."""
    schedule = get_schedule(queue, name)
    del queue._schedules[name]
    trigger = schedule._trigger
    if trigger is not None and queue.pending_key(int.from_bytes(trigger._p_oid, "big")):
        queue.remove(trigger)
    schedule._trigger = None
    return schedule


def trigger_lost(queue: Any, schedule: Schedule) -> bool:
    """True if nothing will fire the schedule's next tick (its trigger ended or is gone).

    :func:`resume_schedule` puts a new trigger then.
    """
    trigger = schedule._trigger
    if trigger is None:
        return True
    if load_error(trigger) is not None:
        return False  # quarantined: it runs again once released
    return trigger.status not in (PENDING, ASSIGNED, ACTIVE)


def run_now(queue: Any, name: str) -> Job[Any]:
    """Put one job of the schedule now, besides its ticks (which it does not change)."""
    schedule = get_schedule(queue, name)
    return _put_work(queue, schedule, clock.utcnow())


def _put_work(queue: Any, schedule: Schedule, tick: datetime.datetime) -> Job[Any]:
    template = schedule.call
    job: Job[Any] = Job(template.callable, *template.args, **dict(template.kwargs))
    queue.put(job, **schedule.options)
    job.annotations[SCHEDULE_TICK] = (schedule.name, clock.to_stamp(tick))
    schedule._last_job = job
    schedule._runs += 1
    return job


# -- firing ----------------------------------------------------------------------


def fire(schedule: Schedule, tick: int) -> dict[str, Any]:
    """The trigger of the tick at ``tick`` (microseconds): put its jobs and the next trigger.

    Runs as a job: everything it does commits with its result, or not at all.
    Whatever goes wrong with the tick's jobs, the next trigger is put, so a
    schedule never stops by itself.
    """
    queue = schedule.parent
    current = (
        None if queue is None or queue._schedules is None else queue._schedules.get(schedule.name)
    )
    if current is not schedule or schedule._next != tick:
        return {"fired": 0, "stale": True}  # removed, or replaced by a later trigger
    first = clock.from_stamp(tick)
    assert first is not None
    # The trigger was claimed as due (by the database's time as this process
    # knows it): its tick has come, even if this clock lags a little.
    now = max(clock.utcnow(), first)
    put: list[Job[Any]] = []
    count = 0
    try:
        count, ticks = schedule.due_ticks(first, now)
        # Ticks that fell while it was paused are dropped, whatever the policy.
        chosen = [t for t in _to_run(schedule, ticks, now) if clock.to_stamp(t) > schedule._quiet]
        if ticks:
            schedule._last_tick = clock.to_stamp(ticks[-1])
        if not schedule._paused:
            put = [_put_work(queue, schedule, when) for when in chosen]
            if put:
                schedule._last_error = None
    except Exception as error:
        _note_error(queue, schedule, error)
    try:
        following = next(schedule.ticks_after(now))
    except Exception as error:
        _note_error(queue, schedule, error)
        following = now + RETRY_AFTER
    _put_trigger(queue, schedule, following)
    return {"fired": len(put), "ticks": count, "next": following.isoformat()}


#: When a tick cannot be computed, the trigger tries again this much later.
RETRY_AFTER = datetime.timedelta(minutes=1)


def _note_error(queue: Any, schedule: Schedule, error: BaseException) -> None:
    if isinstance(error, (*TRANSACTION_ERRORS, *system_errors())):
        raise error  # the database's trouble, not the schedule's: the trigger runs again
    text = one_line(f"{type(error).__name__}: {error}", 300)
    schedule._last_error = text
    logging.getLogger("zasync.events").error(
        "schedule %r of queue %r: %s", schedule.name, queue.name, text
    )


def _to_run(
    schedule: Schedule, ticks: list[datetime.datetime], now: datetime.datetime
) -> list[datetime.datetime]:
    if not ticks:
        return []
    if schedule.missed == EACH:
        return ticks
    if schedule.missed == ONCE:
        return ticks[-1:]
    grace = datetime.timedelta(seconds=schedule.grace)
    return [t for t in ticks[-1:] if now - t <= grace]
