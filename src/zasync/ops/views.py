"""How one job looks to people: its id, summary, history, details and traceback.

Every function takes an open ZODB connection or a job and returns plain data
(dicts, lists, strings, numbers: ready for JSON); none of them writes.

**Job ids** are the job's ZODB object id as a decimal integer: what
``zasync put --json`` prints as ``oid`` and what reprs show.  ``0x``-prefixed
hexadecimal is accepted on input.

Every function here copes with a job whose record cannot be loaded: it is
shown as ``unloadable`` with the reason, never an exception.
"""

from __future__ import annotations

import datetime
import types
from typing import Any

from ZODB.POSException import POSKeyError
from ZODB.utils import p64

from zasync import clock
from zasync._logtext import dotted_name, one_line, short_repr
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
from zasync.model._record import MAX_ERROR_TEXT as MAX_ERROR_TEXT_SHOWN
from zasync.model.dependencies import dependants, is_waiting
from zasync.model.failure import Failure
from zasync.model.job import Job
from zasync.model.quarantine import QuarantinedJob, load_error
from zasync.model.queue import get_queues
from zasync.model.tx import TRANSACTION_ERRORS, disconnect_errors
from zasync.schema import CANCEL, PROGRESS, RETRIED_AS, RETRY_OF

STATES = (
    "pending",
    "assigned",
    "active",
    "callbacks",
    "completed",
    "succeeded",
    "failed",
    "cancelled",
    "dead",
    "quarantined",
    "unloadable",
)
"""The states a filter accepts: the statuses, the outcomes of completed jobs, and the
jobs taken out of the way because they cannot be loaded or stored (``quarantined``;
``unloadable`` for one found elsewhere whose record cannot be read).  ``dead``: the
dead letters, failed jobs (not cancelled ones) that nobody has retried yet."""

_REPR_LIMIT = 300


# -- ids -------------------------------------------------------------------------------


def select_queues(conn: Any, name: str | None) -> list[Any]:
    """Every queue, or the one named ``name``; LookupError naming the known ones."""
    queues = get_queues(conn)
    if name is None:
        return list(queues.values())
    queue = queues.get(name)
    if queue is None:
        raise LookupError(f"no queue named {name!r}; known queues: {queues.keys()!r}")
    return [queue]


def job_id(job: Job[Any]) -> int | None:
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
    return frozenset(
        entry.job._p_oid for q in select_queues(conn, queue) for entry in q.quarantined
    )


def find_quarantined(conn: Any, number: int) -> tuple[Any, QuarantinedJob] | None:
    """The queue and entry of the quarantined job with this id, or None."""
    for q in select_queues(conn, None):
        for entry in q.quarantined:
            if entry.id == number:
                return q, entry
    return None


def _bare_summary(
    job: Job[Any], status: str, cause: str, queue: str | None = None
) -> dict[str, Any]:
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
        "priority": None,
        "timeout": None,
        "cause": cause,
        "queue": queue,
        "dispatcher": None,
        "agent": None,
    }


def _safe_callable_name(job: Job[Any]) -> str:
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
    for q in select_queues(conn, None):
        key = q.pending_key(number)
        if key is not None:
            return q.pending_job(key)
        for da in q.dispatchers.values():
            for agent in da.values():
                for job in [*agent, *agent.parked()]:
                    if job._p_oid == oid:
                        return job
    return None


# -- describing one job ----------------------------------------------------------------


def callable_name(job: Job[Any]) -> str:
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


def outcome(job: Job[Any]) -> str | None:
    """``'succeeded'``, ``'failed'`` or ``'cancelled'`` once the job has a result, else None."""
    if job.stored_status not in FINISHED:
        return None
    result = job.result
    if isinstance(result, Failure):
        return "cancelled" if result.check(CancelledError) else "failed"
    return "succeeded"


def is_dead_letter(job: Job[Any]) -> bool:
    """True for a job that failed after its last attempt and was not retried since."""
    return outcome(job) == "failed" and not job.get_annotation(RETRIED_AS)


def attempts(job: Job[Any]) -> list[dict[str, Any]]:
    """Every attempt of the job, oldest first: the failed ones kept, then the latest.

    Each has ``number``, ``start``, ``end`` (ISO times or None), ``error``
    (one line, or None) and ``outcome``: ``'retried'`` for the kept ones,
    then the job's own status or outcome for the latest.  A job that never
    started has none.
    """
    rows = [
        {
            "number": kept.number,
            "start": _iso(kept.start),
            "end": _iso(kept.end),
            "error": kept.error,
            "outcome": "retried",
        }
        for kept in job.failed_attempts
    ]
    if job.active_start is None and job.active_end is None:
        return rows
    result = job.result
    failed = isinstance(result, Failure)
    rows.append(
        {
            "number": job.failed_attempts[-1].number + 1 if rows else 1,
            "start": _iso(job.active_start),
            "end": _iso(job.active_end),
            "error": one_line(result, MAX_ERROR_TEXT_SHOWN) if failed else None,
            "outcome": outcome(job) or str(job.status),
        }
    )
    return rows


def dependency_info(job: Job[Any]) -> dict[str, Any]:
    """The jobs around ``job`` in the dependency graph, each with its state.

    ``waits_for``: the jobs it was put ``after``; ``needed_by``: the jobs put
    after it; ``waiting``: whether it still waits for some;
    ``on_dependency_failure``: ``'fail'`` or ``'run'`` (None without
    dependencies); ``unmet``: why it will fail without running, if so.
    """

    def node(other: Job[Any]) -> dict[str, Any]:
        if load_error(other) is not None:
            return {"id": job_id(other), "callable": "?", "status": "unloadable", "outcome": None}
        return {
            "id": job_id(other),
            "callable": _safe_callable_name(other),
            "status": str(other.status),
            "outcome": outcome(other),
        }

    after, on_failure = job._after or ((), None)
    return {
        "waits_for": [node(other) for other in after],
        "needed_by": [node(other) for other in dependants(job)],
        "waiting": is_waiting(job.parent, job),
        "on_dependency_failure": on_failure,
        "unmet": job._unmet,
    }


def job_time(job: Job[Any]) -> datetime.datetime | None:
    """The time filters compare: ended if finished, started if running, else due."""
    status = job.status
    when: datetime.datetime | None = job.begin_after
    if status in (CALLBACKS, COMPLETED):
        when = job.active_end or job.active_start or when
    elif status == ACTIVE:
        when = job.active_start or when
    return when


def duration(job: Job[Any]) -> float | None:
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


def _where(job: Job[Any]) -> dict[str, Any]:
    """Queue name, dispatcher UUID and agent name holding the job (each may be None)."""
    agent = job.agent
    queue = job.queue
    da = None if agent is None else agent.parent
    return {
        "queue": None if queue is None else queue.name,
        "dispatcher": None if da is None else str(da.UUID),
        "agent": None if agent is None else agent.name,
    }


def summary(job: Job[Any], quarantined: frozenset[bytes] = frozenset()) -> dict[str, Any]:
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
        "priority": job.priority,
        "timeout": job.timeout,
    }
    data.update(_where(job))
    return data


def _callback_tree(job: Job[Any], depth: int = 0) -> list[dict[str, Any]]:
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


def history(job: Job[Any]) -> list[dict[str, Any]]:
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
        data.update(history=[], attempts=[], callbacks=[], args=[], kwargs={})
        data.update(waits_for=[], needed_by=[], waiting=False, on_dependency_failure=None)
        data.update(unmet=None, unique_key=None, unique_until=None)
        data.update(dead_letter=False, error=data["cause"])
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
            **dependency_info(job),
            "unique_key": None if job._unique is None else job._unique[0],
            "unique_until": None if job._unique is None else job._unique[1],
            "retry_of": job.get_annotation(RETRY_OF),
            "retried_as": list(job.get_annotation(RETRIED_AS, ())),
            "history": history(job),
            "attempts": attempts(job),
            "dead_letter": is_dead_letter(job),
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
