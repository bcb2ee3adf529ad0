"""Finding and counting jobs, workers and queues: what listings, stats and charts read.

Every function takes an open ZODB connection and returns plain data; none of
them writes.  The connection's view is whatever its transaction began with;
callers that want the newest state call ``transaction.begin()`` (or open a new
connection) first.

**Where jobs are found**: pending jobs in their queue; claimed, running and
waiting jobs in the agents of each registered dispatcher; finished jobs in
the agents' completed collections and in the queue's ``cancelled``
collection, for their retention window; jobs that cannot be loaded or stored
in the queue's quarantine (see :mod:`zasync.model.quarantine`).

**Filters** (``JobFilter``): states (``pending``, ``assigned``, ``active``,
``callbacks``, ``completed``, the outcomes ``succeeded``, ``failed``,
``cancelled``, and ``dead`` for the dead letters), a glob on the callable's
dotted name, and ``since``/``before`` durations (``5m``, ``1h30m``) relative
to now, compared with the job's own time: when it ended if completed, when it
started if running, when it is due if pending.
"""

from __future__ import annotations

import datetime
import fnmatch
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from zasync import clock
from zasync.errors import InvalidValueError
from zasync.model.job import Job
from zasync.model.quarantine import load_error
from zasync.ops.durations import parse_duration
from zasync.ops.views import (
    STATES,
    _iso,
    _safe_callable_name,
    duration,
    is_dead_letter,
    job_id,
    job_time,
    outcome,
    quarantined_oids,
    select_queues,
    summary,
)


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a listing keeps; build it with :func:`make_filter` from user input."""

    states: frozenset[str] = frozenset()
    callable_glob: str | None = None
    since: datetime.datetime | None = None
    before: datetime.datetime | None = None
    queue: str | None = None

    def matches(self, job: Job[Any], quarantined: frozenset[bytes] = frozenset()) -> bool:
        """True if ``job`` passes every condition."""
        states = _states_of(job, quarantined)
        if self.states and not self.states & states:
            return False
        if self.callable_glob is not None and not fnmatch.fnmatchcase(
            _safe_callable_name(job), self.callable_glob
        ):
            return False
        if self.since is not None or self.before is not None:
            when = None if states & _NOT_READ else job_time(job)
            if when is None:
                return False
            if self.since is not None and when < self.since:
                return False
            if self.before is not None and when >= self.before:
                return False
        return True


_NOT_READ = frozenset({"quarantined", "unloadable"})


def _states_of(job: Job[Any], quarantined: frozenset[bytes] = frozenset()) -> set[str]:
    if job._p_oid in quarantined:
        return {"quarantined"}
    if load_error(job) is not None:
        return {"unloadable"}
    states = {str(job.status)}
    finished = outcome(job)
    if finished is not None:
        states.add(finished)
        if is_dead_letter(job):
            states.add("dead")
    return states


def make_filter(
    states: Iterable[str] | str | None = None,
    callable_glob: str | None = None,
    since: str | None = None,
    before: str | None = None,
    queue: str | None = None,
) -> JobFilter:
    """A JobFilter from text as people type it; ValueError naming what is wrong.

    ``states`` is a list or a comma-separated string of :data:`STATES`;
    ``since`` and ``before`` are durations ago (``5m``, ``2h``, ``1d``).
    """
    if isinstance(states, str):
        states = [s for s in states.split(",") if s.strip()]
    chosen = frozenset(s.strip().lower() for s in states or ())
    unknown = sorted(chosen - set(STATES))
    if unknown:
        raise InvalidValueError(
            f"unknown state {', '.join(map(repr, unknown))}; choose from {', '.join(STATES)}"
        )
    now = clock.utcnow()
    since_time = None if not since else now - _duration(since, "since")
    before_time = None if not before else now - _duration(before, "before")
    return JobFilter(chosen, callable_glob or None, since_time, before_time, queue)


def _duration(text: str, option: str) -> datetime.timedelta:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise InvalidValueError(f"bad {option}: {e}") from None


def iter_jobs(conn: Any, queue: str | None = None) -> Iterator[Any]:
    """Every job monitoring can see: held by agents, pending, then finished (newest first)."""
    for q in select_queues(conn, queue):
        for da in q.dispatchers.values():
            for agent in da.values():
                yield from agent
                yield from agent.parked()
        yield from q
        yield from q.waiting
        yield from (entry.job for entry in q.quarantined)
        finished = [agent.completed for da in q.dispatchers.values() for agent in da.values()]
        if q.cancelled is not None:
            finished.append(q.cancelled)
        yield from _newest_first(finished)


def _newest_first(collections: list[Any]) -> Iterator[Any]:
    """Merge completed collections (each newest first) by their keys."""
    import heapq

    streams = [c._data.items() for c in collections if len(c)]
    for _, job in heapq.merge(*streams, key=lambda item: item[0]):
        yield job


def list_jobs(
    conn: Any, filter: JobFilter | None = None, limit: int | None = 50
) -> list[dict[str, Any]]:
    """Summaries of the jobs that ``filter`` keeps, at most ``limit`` (None: all)."""
    chosen = filter or JobFilter()
    found: list[dict[str, Any]] = []
    quarantined = quarantined_oids(conn, chosen.queue)
    for job in iter_jobs(conn, chosen.queue):
        if chosen.matches(job, quarantined):
            found.append(summary(job, quarantined))
            if limit is not None and len(found) >= limit:
                break
    return found


def count_jobs(conn: Any, filter: JobFilter | None = None) -> int:
    """How many jobs ``filter`` keeps."""
    chosen = filter or JobFilter()
    quarantined = quarantined_oids(conn, chosen.queue)
    return sum(1 for job in iter_jobs(conn, chosen.queue) if chosen.matches(job, quarantined))


def counts_by_queue(conn: Any) -> dict[str, dict[str, int]]:
    """For each queue, how many jobs are in each status and outcome (zeros included)."""
    counts: dict[str, dict[str, int]] = {}
    for q in select_queues(conn, None):
        entry = dict.fromkeys(STATES, 0)
        entry["pending"] = len(q) + len(q.waiting)  # waiting for dependencies: pending too
        entry["quarantined"] = len(q.quarantined)
        for da in q.dispatchers.values():
            for agent in da.values():
                for job in [*agent, *agent.parked()]:
                    for state in _states_of(job):
                        entry[state] += 1
        finished = [agent.completed for da in q.dispatchers.values() for agent in da.values()]
        if q.cancelled is not None:
            finished.append(q.cancelled)
        for job in _newest_first(finished):
            for state in _states_of(job):
                entry[state] += 1
        counts[q.name] = entry
    return counts


def last_completed(conn: Any, filter: JobFilter | None = None) -> dict[str, Any] | None:
    """The most recently completed job that ``filter`` keeps, or None."""
    chosen = filter or JobFilter()
    newest: Any = None
    for q in select_queues(conn, chosen.queue):
        finished = [agent.completed for da in q.dispatchers.values() for agent in da.values()]
        if q.cancelled is not None:
            finished.append(q.cancelled)
        for job in _newest_first(finished):
            if chosen.matches(job) and load_error(job) is None:
                if newest is None or (job.key or 0) < (newest.key or 0):
                    newest = job
                break
    return None if newest is None else summary(newest)


def next_pending(conn: Any, filter: JobFilter | None = None) -> dict[str, Any] | None:
    """The pending job that comes first in claim order (and that ``filter`` keeps), or None."""
    chosen = filter or JobFilter()
    best: Any = None
    for q in select_queues(conn, chosen.queue):
        for job in q:
            if chosen.matches(job) and load_error(job) is None:
                if best is None or job._queue_key < best._queue_key:
                    best = job
                break
    return None if best is None else summary(best)


def job_stats(conn: Any, filter: JobFilter | None = None) -> dict[str, Any]:
    """Counts by state and the shortest, longest and mean durations, for the kept jobs."""
    chosen = filter or JobFilter()
    counts = dict.fromkeys(STATES, 0)
    extremes: dict[str, dict[str, Any]] = {}
    quarantined = quarantined_oids(conn, chosen.queue)
    for job in iter_jobs(conn, chosen.queue):
        if not chosen.matches(job, quarantined):
            continue
        states = _states_of(job, quarantined)
        for state in states:
            counts[state] += 1
        seconds = None if states & _NOT_READ else duration(job)
        if seconds is None:
            continue
        kind = outcome(job) or "active"
        entry = extremes.setdefault(
            kind, {"shortest": None, "longest": None, "total": 0.0, "count": 0}
        )
        ident = job_id(job)
        if entry["shortest"] is None or seconds < entry["shortest"]["seconds"]:
            entry["shortest"] = {"id": ident, "seconds": seconds}
        if entry["longest"] is None or seconds > entry["longest"]["seconds"]:
            entry["longest"] = {"id": ident, "seconds": seconds}
        entry["total"] += seconds
        entry["count"] += 1
    durations = {
        kind: {
            "shortest": e["shortest"],
            "longest": e["longest"],
            "mean": e["total"] / e["count"] if e["count"] else None,
        }
        for kind, e in extremes.items()
    }
    return {"counts": counts, "durations": durations}


# -- dispatchers, agents, quotas ----------------------------------------------------------


def dispatchers(conn: Any, queue: str | None = None) -> list[dict[str, Any]]:
    """Every dispatcher registration: liveness, last ping, and its agents with their jobs."""
    now = clock.utcnow()
    found: list[dict[str, Any]] = []
    for q in select_queues(conn, queue):
        for uuid, da in q.dispatchers.items():
            last_ping = da.last_ping.value
            if da.activated is None:
                state = "stopped"
            elif da.dead:
                state = "dead"
            else:
                state = "alive"
            found.append(
                {
                    "queue": q.name,
                    "uuid": str(uuid),
                    "state": state,
                    "activated": _iso(da.activated),
                    "last_ping": _iso(last_ping),
                    "seconds_since_ping": None
                    if last_ping is None
                    else (now - last_ping).total_seconds(),
                    "ping_interval": da.ping_interval.total_seconds(),
                    "death_interval": da.ping_death_interval.total_seconds(),
                    "thread_deaths": da.thread_deaths,
                    "agents": [
                        {
                            "name": name,
                            "size": agent.size,
                            "threads": agent.threads,
                            "held": len(agent),
                            "completed": len(agent.completed),
                            "jobs": [summary(job) for job in [*agent, *agent.parked()]],
                        }
                        for name, agent in da.items()
                    ],
                }
            )
    return found


def uuids(conn: Any) -> list[str]:
    """The UUIDs of every registered dispatcher, in any queue, sorted."""
    return sorted({str(u) for q in select_queues(conn, None) for u in q.dispatchers})


def pause_state(queue: Any) -> dict[str, Any]:
    """``paused``, ``paused_at`` (ISO) and ``pause_reason`` of a queue, for every view."""
    at = queue.paused_at
    return {
        "paused": queue.paused,
        "paused_at": None if at is None else at.isoformat(),
        "pause_reason": queue.pause_reason,
    }


def queues(conn: Any) -> list[dict[str, Any]]:
    """Each queue with its counts by state and its quotas."""
    counts = counts_by_queue(conn)
    return [
        {
            "name": q.name,
            "counts": counts[q.name],
            "quotas": [
                {"name": quota.name, "size": quota.size, "used": len(quota)}
                for quota in q.quotas.values()
            ],
            "rate_limits": rate_limit_state(q),
            "dispatchers": len(q.dispatchers),
            "default_timeout": q.default_timeout,
            **pause_state(q),
        }
        for q in select_queues(conn, None)
    ]


def rate_limit_state(queue: Any) -> list[dict[str, Any]]:
    """Each rate limit of a queue: its count, period, and starts in the last period."""
    if queue._rate_limits is None:
        return []
    now = clock.utcnow()
    return [
        {"name": limit.name, "count": limit.count, "per": limit.per, "used": limit.used(now)}
        for limit in queue._rate_limits.values()
    ]


def timeline(
    conn: Any,
    window: datetime.timedelta = datetime.timedelta(hours=1),
    buckets: int = 30,
    queue: str | None = None,
) -> dict[str, Any]:
    """Finished jobs over the last ``window`` in ``buckets`` slices: for the charts.

    Each bucket has ``start``, ``succeeded``, ``failed`` (cancelled jobs count
    as failed) and ``mean_duration`` (seconds, or None).
    """
    if buckets < 1 or window <= datetime.timedelta(0):
        raise InvalidValueError("a timeline needs a positive window and at least one bucket")
    now = clock.utcnow()
    start = now - window
    width = window / buckets
    rows: list[dict[str, Any]] = [
        {"start": _iso(start + i * width), "succeeded": 0, "failed": 0, "total_duration": 0.0}
        for i in range(buckets)
    ]
    for q in select_queues(conn, queue):
        finished = [agent.completed for da in q.dispatchers.values() for agent in da.values()]
        if q.cancelled is not None:
            finished.append(q.cancelled)
        for job in _newest_first(finished):
            if load_error(job) is not None:
                continue
            ended = job.active_end
            if ended is None:
                continue
            if ended < start:
                break
            index = min(buckets - 1, int((ended - start) / width))
            row = rows[index]
            row["succeeded" if outcome(job) == "succeeded" else "failed"] += 1
            row["total_duration"] += duration(job) or 0.0
    for row in rows:
        done = row["succeeded"] + row["failed"]
        row["mean_duration"] = row.pop("total_duration") / done if done else None
    return {"window": window.total_seconds(), "buckets": rows}


# -- helpers for callers -------------------------------------------------------------------


@dataclass
class Snapshot:
    """The dashboard's overview in one read: queues, dispatchers and a timeline."""

    queues: list[dict[str, Any]] = field(default_factory=list)
    dispatchers: list[dict[str, Any]] = field(default_factory=list)
    timeline: dict[str, Any] = field(default_factory=dict)
    time: str = ""


def snapshot(conn: Any) -> Snapshot:
    """Queues, dispatchers and the last hour's timeline, read in one transaction."""
    return Snapshot(
        queues=queues(conn),
        dispatchers=dispatchers(conn),
        timeline=timeline(conn),
        time=clock.utcnow().isoformat(),
    )
