"""Broadcast: a job run once on every worker of a queue that is alive when it is put.

:func:`broadcast` puts one copy of the job per live dispatcher of the queue,
each *targeted* at that dispatcher (``Job._target``, its UUID as an int): a
claim by any other dispatcher passes over it.  It also puts a *collector*
job after all the copies (see :mod:`zasync.model.dependencies`), whose
result maps each worker's UUID to what its copy returned (or the error, as
text).  The collector is what :func:`broadcast` returns.

A worker that stops, or is found dead, before it ran its copy cannot run it
any more: a claim by any worker that meets a copy whose worker is no longer
active hands out a job that fails it (``AbortedError``), whether the copy
was still waiting or was handed back or put back after an interruption; the
collector then reports that.  (A worker restarted with the same UUID, as on
the embedded file, runs the copies it finds still waiting for it.)
"""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Callable
from typing import Any

from zasync.errors import InvalidValueError
from zasync.interfaces import CALLBACKS, COMPLETED
from zasync.model.failure import Failure
from zasync.model.job import Job, as_job
from zasync.model.quarantine import load_error


def live_dispatchers(queue: Any) -> list[Any]:
    """The dispatcher records of ``queue`` that are activated and not dead."""
    return [da for da in queue.dispatchers.values() if da.activated and not da.dead]


def broadcast(
    queue: Any, call: Callable[..., Any] | Job[Any], *args: Any, **kwargs: Any
) -> Job[dict[str, Any]]:
    """Put ``call(*args, **kwargs)`` once for each live worker of ``queue``; return the collector.

    Joins the caller's transaction.  The collector's result, once every
    copy has finished, is ``{worker UUID: result}`` (a failed copy's entry is
    its error as text).  InvalidValueError if no worker of the queue is alive.
    """
    template = as_job(call) if isinstance(call, Job) else Job(call, *args, **kwargs)
    workers = live_dispatchers(queue)
    if not workers:
        raise InvalidValueError(
            f"no worker of queue {queue.name!r} is alive to run a broadcast job", queue=queue
        )
    copies = []
    for record in workers:
        copy: Job[Any] = Job(template.callable, *template.args, **dict(template.kwargs))
        copy._target = record.UUID.int
        queue.put(copy)
        copies.append(copy)
    collector: Job[dict[str, Any]] = Job(collect_broadcast, *copies)
    queue.put(collector, after=copies, on_dependency_failure="run")
    return collector


def collect_broadcast(*copies: Job[Any]) -> dict[str, Any]:
    """The collector's call: each copy's result by the UUID of the worker it was for."""
    found: dict[str, Any] = {}
    for number, copy in enumerate(copies):
        broken = load_error(copy)
        if broken is not None:  # discarded from quarantine: nothing of it can be read
            found[f"copy {number}"] = f"cannot be loaded: {broken}"
            continue
        worker = str(uuid_module.UUID(int=copy._target)) if copy._target else "?"
        if copy.status not in (CALLBACKS, COMPLETED):
            found[worker] = "not run: removed from its queue"
            continue
        result = copy.result
        found[worker] = str(result) if isinstance(result, Failure) else result
    return found


def admits(job: Any, claimer: uuid_module.UUID | None) -> bool:
    """True if ``claimer`` may claim ``job``: it is not targeted, or targeted at it."""
    target = job._target
    return target is None or (claimer is not None and claimer.int == target)


def target_gone(queue: Any, job: Any) -> bool:
    """True for a copy whose worker is no longer active in ``queue``: it can never run."""
    record = queue.dispatchers.get(uuid_module.UUID(int=job._target))
    return record is None or not record.activated
