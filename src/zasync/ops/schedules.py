"""Operating periodic jobs: list schedules, add, pause, resume, remove, run now.

The read functions take an open connection and return plain data; the
actions take a ``ZODB.DB``, work in a transaction of their own (retrying
conflicts a few times) and say what they did.  Unknown queues or schedules
raise LookupError, bad values InvalidValueError, before anything changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zasync.model import periodic
from zasync.model.queue import get_queue
from zasync.model.tx import commit_in_fresh_connection
from zasync.ops.actions import ATTEMPTS
from zasync.ops.views import _iso, _short_repr, callable_name, job_id, outcome, select_queues


def schedule_info(queue: Any, schedule: periodic.Schedule) -> dict[str, Any]:
    """One schedule as plain data: what, when, what happened last, what comes next."""
    last = schedule.last_job
    return {
        "queue": queue.name,
        "name": schedule.name,
        "callable": callable_name(schedule.call),
        "call": _short_repr(schedule.call),
        "cron": schedule.cron,
        "every": schedule.every,
        "timezone": schedule.timezone,
        "when": schedule.describe(),
        "missed": schedule.missed,
        "grace": schedule.grace,
        "paused": schedule.paused,
        "next_run": _iso(schedule.next_run),
        "last_tick": _iso(schedule.last_tick),
        "runs": schedule.runs,
        "last_job": None if last is None else job_id(last),
        "last_status": None if last is None else str(last.status),
        "last_outcome": None if last is None else outcome(last),
        "last_error": schedule._last_error,
        "trigger_lost": periodic.trigger_lost(queue, schedule),
        "options": {k: _short_repr(v) for k, v in schedule.options.items()},
    }


def list_schedules(conn: Any, queue: str | None = None) -> list[dict[str, Any]]:
    """Every schedule (of one queue, or of all), by queue and name."""
    return [
        schedule_info(q, schedule)
        for q in select_queues(conn, queue)
        for schedule in periodic.schedules_of(q)
    ]


def _act(db: Any, queue_name: str, action: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    def work(conn: Any, tm: Any) -> dict[str, Any]:
        return action(get_queue(conn, queue_name))

    return commit_in_fresh_connection(db, work, ATTEMPTS)


def add(
    db: Any,
    queue_name: str,
    name: str,
    call: Callable[..., Any],
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    **schedule_options: Any,
) -> dict[str, Any]:
    """Add a schedule (see :func:`zasync.model.periodic.add_schedule`) and describe it."""

    def action(queue: Any) -> dict[str, Any]:
        made = periodic.add_schedule(queue, name, call, *args, **(kwargs or {}), **schedule_options)
        return schedule_info(queue, made)

    return _act(db, queue_name, action)


def pause(db: Any, queue_name: str, name: str) -> dict[str, Any]:
    """Let the schedule's ticks pass without jobs; ``changed`` says whether it was running."""

    def action(queue: Any) -> dict[str, Any]:
        changed = periodic.pause_schedule(queue, name)
        return {"changed": changed, **schedule_info(queue, periodic.get_schedule(queue, name))}

    return _act(db, queue_name, action)


def resume(db: Any, queue_name: str, name: str) -> dict[str, Any]:
    """Let the schedule's ticks put jobs again; ``changed`` says whether it was paused."""

    def action(queue: Any) -> dict[str, Any]:
        changed = periodic.resume_schedule(queue, name)
        return {"changed": changed, **schedule_info(queue, periodic.get_schedule(queue, name))}

    return _act(db, queue_name, action)


def remove(db: Any, queue_name: str, name: str) -> dict[str, Any]:
    """Forget the schedule; the jobs it put stay."""

    def action(queue: Any) -> dict[str, Any]:
        gone = periodic.remove_schedule(queue, name)
        return {"removed": gone.name, "queue": queue.name, "runs": gone.runs}

    return _act(db, queue_name, action)


def run_now(db: Any, queue_name: str, name: str) -> dict[str, Any]:
    """Put one job of the schedule now; its ticks go on as before."""

    def action(queue: Any) -> dict[str, Any]:
        job = periodic.run_now(queue, name)
        return {"id": job_id(job), "queue": queue.name, "schedule": name}

    return _act(db, queue_name, action)
