"""What the CLI, the dashboard and the metrics read: queries over a database connection.

Every function here takes an open ZODB connection and returns plain data
(dicts, lists, strings, numbers: ready for JSON).  None of them writes.  The
connection's view is whatever its transaction began with; callers that want
the newest state call ``transaction.begin()`` (or open a new connection)
first.

**Job ids** are the job's ZODB object id as a decimal integer: what
``zasync put --json`` prints as ``oid`` and what reprs show.  ``0x``-prefixed
hexadecimal is accepted on input.

**Where jobs are found**: pending jobs in their queue; claimed, running and
waiting jobs in the agents of each registered dispatcher; finished jobs in
the agents' completed collections and in the queue's ``cancelled``
collection, for their retention window; jobs that cannot be loaded or stored
in the queue's quarantine (see :mod:`zasync.quarantine`).  Every function
here copes with a job whose record cannot be loaded: it is shown as
``unloadable`` with the reason, never an exception.

**Filters** (``JobFilter``): states (``pending``, ``assigned``, ``active``,
``callbacks``, ``completed``, and the outcomes ``succeeded``, ``failed``,
``cancelled``), a glob on the callable's dotted name, and ``since``/``before``
durations (``5m``, ``1h30m``) relative to now, compared with the job's own
time: when it ended if completed, when it started if running, when it is due
if pending.
"""

from __future__ import annotations

import datetime
import fnmatch
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ZODB.POSException import POSKeyError
from ZODB.utils import p64

from zasync import clock
from zasync._logtext import dotted_name, short_repr
from zasync.errors import InvalidValueError
from zasync.interfaces import (
    ACTIVE,
    CALLBACKS,
    COMPLETED,
    FINISHED,
    PENDING,
    CancelledError,
    IJob,
    UnknownJobError,
)
from zasync.model.cancellation import CANCEL
from zasync.model.failure import Failure
from zasync.model.lanes import lane_of
from zasync.model.quarantine import QuarantinedJob, load_error
from zasync.model.queue import get_queues
from zasync.model.tx import TRANSACTION_ERRORS, disconnect_errors
from zasync.ops.durations import parse_duration
from zasync.runtime.local import PROGRESS

STATES = (
    "pending",
    "assigned",
    "active",
    "callbacks",
    "completed",
    "succeeded",
    "failed",
    "cancelled",
    "quarantined",
    "unloadable",
)
"""The states a filter accepts: the statuses, the outcomes of completed jobs, and the
jobs taken out of the way because they cannot be loaded or stored (``quarantined``;
``unloadable`` for one found elsewhere whose record cannot be read)."""

RETRY_OF = "zasync.retry_of"
RETRIED_AS = "zasync.retried_as"
_REPR_LIMIT = 300


# -- ids -------------------------------------------------------------------------------


def job_id(job: Any) -> int | None:
    """A job's printable id: its object id as an integer (None if not stored yet)."""
    oid = getattr(job, "_p_oid", None)
    return None if oid is None else int.from_bytes(oid, "big")


def parse_job_id(text: str | int) -> int:
    """``'42'`` or ``'0x2a'`` -> 42; ValueError saying what a job id looks like."""
    if isinstance(text, int):
        value = text
    else:
        token = text.strip().lower()
        try:
            value = int(token, 16) if token.startswith("0x") else int(token, 10)
        except ValueError:
            raise InvalidValueError(
                f"not a job id: {text!r} (job ids are numbers, such as 42 or 0x2a)"
            ) from None
    if value < 0 or value >= 1 << 64:
        raise InvalidValueError(f"not a job id: {text!r} (out of range)")
    return value


def get_job(conn: Any, ident: str | int) -> Any:
    """The job with this id; UnknownJobError if there is none (or it is not a job)."""
    number = parse_job_id(ident)
    try:
        obj = conn.get(p64(number))
        is_job = IJob.providedBy(obj)
    except (POSKeyError, KeyError):
        is_job = False
    except (*TRANSACTION_ERRORS, *disconnect_errors()):
        raise
    except Exception:
        # The record itself cannot be read (not even its class): reach the
        # job through what refers to it, which knows its class.
        obj = _referred_to(conn, number)
        is_job = obj is not None
    if not is_job:
        raise UnknownJobError(f"no job with id {number} in this database")
    return obj


# -- jobs that cannot be loaded -----------------------------------------------------------


def quarantined_oids(conn: Any, queue: str | None = None) -> frozenset[bytes]:
    """The object ids of every quarantined job (of one queue, or all)."""
    return frozenset(entry.job._p_oid for q in _queues(conn, queue) for entry in q.quarantined)


def find_quarantined(conn: Any, number: int) -> tuple[Any, QuarantinedJob] | None:
    """The queue and entry of the quarantined job with this id, or None."""
    for q in _queues(conn, None):
        for entry in q.quarantined:
            if entry.id == number:
                return q, entry
    return None


def _bare_summary(job: Any, status: str, cause: str, queue: str | None = None) -> dict[str, Any]:
    """What a listing shows of a job without reading its state."""
    return {
        "id": job_id(job),
        "status": status,
        "outcome": None,
        "callable": _safe_callable_name(job),
        "call": f"<job {job_id(job)}: {cause}>",
        "begin_after": None,
        "active_start": None,
        "active_end": None,
        "duration": None,
        "cancel_requested": False,
        "cause": cause,
        "queue": queue,
        "dispatcher": None,
        "agent": None,
    }


def _safe_callable_name(job: Any) -> str:
    """The callable's dotted name, from a ``Broken`` stand-in too; ``?`` if unreadable."""
    if load_error(job) is not None:
        return "?"
    try:
        return callable_name(job)
    except Exception:
        return "?"


def _referred_to(conn: Any, number: int) -> Any:
    """The job with this id as its queue, quarantine or an agent refers to it, or None."""
    found = find_quarantined(conn, number)
    if found is not None:
        return found[1].job
    oid = p64(number)
    for q in _queues(conn, None):
        key = q.pending_key(number)
        if key is not None:
            return q._lanes[lane_of(oid, q.lane_count)][key]
        for da in q.dispatchers.values():
            for agent in da.values():
                for job in [*agent, *agent.parked()]:
                    if job._p_oid == oid:
                        return job
    return None


# -- describing one job ----------------------------------------------------------------


def callable_name(job: Any) -> str:
    """The dotted name of what a job calls: ``module.function``, ``module.Class.method``.

    For the wrapper that ``addCallbacks`` adds, the user's callables:
    ``module.on_success | module.on_failure``.
    """
    sides = job.user_callables()
    if sides is not None:
        return " | ".join(callable_name(side) for side in sides if side is not None)
    root, name = job._callable_root, job._callable_name
    if name is not None:
        return f"{dotted_name(type(root))}.{name}"
    if isinstance(root, types.MethodType):
        return f"{callable_name_of(root.__func__)}"
    return callable_name_of(root)


def callable_name_of(value: Any) -> str:
    """The dotted name of a function, class or other callable."""
    if getattr(value, "__module__", None) and getattr(value, "__qualname__", None):
        return dotted_name(value)
    return dotted_name(type(value))


def outcome(job: Any) -> str | None:
    """``'succeeded'``, ``'failed'`` or ``'cancelled'`` once the job has a result, else None."""
    if job.stored_status not in FINISHED:
        return None
    result = job.result
    if isinstance(result, Failure):
        return "cancelled" if result.check(CancelledError) else "failed"
    return "succeeded"


def job_time(job: Any) -> datetime.datetime | None:
    """The time filters compare: ended if finished, started if running, else due."""
    status = job.status
    when: datetime.datetime | None = job.begin_after
    if status in (CALLBACKS, COMPLETED):
        when = job.active_end or job.active_start or when
    elif status == ACTIVE:
        when = job.active_start or when
    return when


def duration(job: Any) -> float | None:
    """Seconds from start to end (to now while running); None if it never started."""
    start: datetime.datetime | None = job.active_start
    if start is None:
        return None
    end: datetime.datetime = job.active_end or clock.utcnow()
    return max(0.0, (end - start).total_seconds())


def _iso(value: datetime.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _short_repr(value: Any) -> str:
    return short_repr(value, _REPR_LIMIT)


def _where(job: Any) -> dict[str, Any]:
    """Queue name, dispatcher UUID and agent name holding the job (each may be None)."""
    agent = job.agent
    queue = job.queue
    da = None if agent is None else agent.parent
    return {
        "queue": None if queue is None else queue.name,
        "dispatcher": None if da is None else str(da.UUID),
        "agent": None if agent is None else agent.name,
    }


def summary(job: Any, quarantined: frozenset[bytes] = frozenset()) -> dict[str, Any]:
    """One line's worth of a job, for lists (any job: quarantined and unloadable too)."""
    if job._p_oid in quarantined:
        entry = find_quarantined(job._p_jar, job_id(job) or 0)
        if entry is not None:
            return _bare_summary(job, "quarantined", entry[1].cause, entry[0].name)
        return _bare_summary(job, "quarantined", "quarantined")
    error = load_error(job)
    if error is not None:
        return _bare_summary(job, "unloadable", f"its record cannot be loaded: {error}")
    data: dict[str, Any] = {
        "id": job_id(job),
        "status": str(job.status),
        "outcome": outcome(job),
        "callable": callable_name(job),
        "call": _short_repr(job),
        "begin_after": _iso(job.begin_after),
        "active_start": _iso(job.active_start),
        "active_end": _iso(job.active_end),
        "duration": duration(job),
        "cancel_requested": job.get_annotation(CANCEL) is not None,
    }
    data.update(_where(job))
    return data


def _callback_tree(job: Any, depth: int = 0) -> list[dict[str, Any]]:
    if depth > 20:  # callbacks of callbacks: deep enough for any real chain
        return []
    return [
        {
            "id": job_id(callback),
            "callable": callable_name(callback),
            "status": str(callback.status),
            "outcome": outcome(callback),
            "callbacks": _callback_tree(callback, depth + 1),
        }
        for callback in job.callbacks
    ]


def history(job: Any) -> list[dict[str, Any]]:
    """The job's status changes that its stored times tell, oldest first."""
    steps: list[dict[str, Any]] = []
    if job.begin_after is not None:
        steps.append({"status": str(PENDING), "at": _iso(job.begin_after)})
    if job.active_start is not None:
        steps.append({"status": str(ACTIVE), "at": _iso(job.active_start)})
    if job.active_end is not None:
        steps.append({"status": str(CALLBACKS), "at": _iso(job.active_end)})
    if job.stored_status == COMPLETED:
        ended = job.initial_callbacks_end or job.active_end
        steps.append({"status": str(COMPLETED), "at": _iso(ended)})
    return steps


def job_info(conn: Any, ident: str | int) -> dict[str, Any]:
    """Everything about one job: call, arguments, times, result or traceback, progress, tree."""
    job = get_job(conn, ident)
    found = find_quarantined(conn, job_id(job) or 0)
    error = load_error(job)
    if found is not None or error is not None:
        if found is not None:
            queue, entry = found
            data = _bare_summary(job, "quarantined", entry.cause, queue.name)
            data["quarantined_at"] = _iso(entry.when)
        else:
            data = _bare_summary(job, "unloadable", f"its record cannot be loaded: {error}")
        # The same keys as a sound job's, read from nothing but the quarantine.
        data.update(
            dict.fromkeys(["result", "traceback", "error_type", "progress", "cancel_request"])
        )
        data.update(history=[], callbacks=[], args=[], kwargs={}, error=data["cause"])
        return data
    data = summary(job)
    result = job.result
    failed = isinstance(result, Failure)
    parent = job.parent
    data.update(
        {
            "args": [_short_repr(a) for a in job.args],
            "kwargs": {str(k): _short_repr(v) for k, v in job.kwargs.items()},
            "begin_by": None if job.begin_by is None else job.begin_by.total_seconds(),
            "quota_names": list(job.quota_names),
            "assigner": None if job.assignerUUID is None else str(job.assignerUUID),
            "failure_log_level": job.failure_log_level,
            "retry_policy": _short_repr(job.retry_policy_factory)
            if job.retry_policy_factory is not None
            else None,
            "result": None,
            "error": result.getErrorMessage() if failed else None,
            "error_type": result.type_name if failed else None,
            "traceback": result.getTraceback() if failed else None,
            "progress": _plain(job.get_annotation(PROGRESS)),
            "cancel_request": _plain(job.get_annotation(CANCEL)),
            "annotations": sorted(str(k) for k in (job._annotations or {})),
            "parent_job": job_id(parent) if IJob.providedBy(parent) else None,
            "retry_of": job.get_annotation(RETRY_OF),
            "retried_as": list(job.get_annotation(RETRIED_AS, ())),
            "history": history(job),
            "callbacks": _callback_tree(job),
        }
    )
    if not failed and job.stored_status in FINISHED:
        data["result"] = _plain(result)
    return data


def traceback(conn: Any, ident: str | int) -> str:
    """The traceback of a failed job; ValueError if the job did not fail."""
    info = job_info(conn, ident)
    if info["status"] in ("quarantined", "unloadable"):
        raise InvalidValueError(f"job {info['id']} has no traceback: {info['cause']}")
    job = get_job(conn, ident)
    result = job.result
    if not isinstance(result, Failure):
        raise InvalidValueError(
            f"job {job_id(job)} has no traceback: it is {job.status}, not failed", job=job
        )
    return result.getTraceback()


def _plain(value: Any) -> Any:
    """A JSON-ready version of ``value``: containers copied, other objects as reprs."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict) or hasattr(value, "items"):
        try:
            return {str(k): _plain(v) for k, v in value.items()}
        except Exception:
            return _short_repr(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return _short_repr(value)


# -- finding jobs ----------------------------------------------------------------------


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a listing keeps; build it with :func:`make_filter` from user input."""

    states: frozenset[str] = frozenset()
    callable_glob: str | None = None
    since: datetime.datetime | None = None
    before: datetime.datetime | None = None
    queue: str | None = None

    def matches(self, job: Any, quarantined: frozenset[bytes] = frozenset()) -> bool:
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


def _states_of(job: Any, quarantined: frozenset[bytes] = frozenset()) -> set[str]:
    if job._p_oid in quarantined:
        return {"quarantined"}
    if load_error(job) is not None:
        return {"unloadable"}
    states = {str(job.status)}
    finished = outcome(job)
    if finished is not None:
        states.add(finished)
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


def _queues(conn: Any, name: str | None) -> list[Any]:
    queues = get_queues(conn)
    if name is None:
        return list(queues.values())
    queue = queues.get(name)
    if queue is None:
        raise LookupError(f"no queue named {name!r}; known queues: {queues.keys()!r}")
    return [queue]


def iter_jobs(conn: Any, queue: str | None = None) -> Iterator[Any]:
    """Every job monitoring can see: held by agents, pending, then finished (newest first)."""
    for q in _queues(conn, queue):
        for da in q.dispatchers.values():
            for agent in da.values():
                yield from agent
                yield from agent.parked()
        yield from q
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
    for q in _queues(conn, None):
        entry = dict.fromkeys(STATES, 0)
        entry["pending"] = len(q)
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
    for q in _queues(conn, chosen.queue):
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
    for q in _queues(conn, chosen.queue):
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
    for q in _queues(conn, queue):
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
    return sorted({str(u) for q in _queues(conn, None) for u in q.dispatchers})


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
            "dispatchers": len(q.dispatchers),
        }
        for q in _queues(conn, None)
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
    for q in _queues(conn, queue):
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
