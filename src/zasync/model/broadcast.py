"""Broadcast: a job run once on every worker of a queue that is alive when it is put.

:func:`broadcast` puts one copy of the job per live dispatcher of the queue,
each *targeted* at that dispatcher (``Job._target``, its UUID as an int): a
claim by any other dispatcher passes over it.  It also puts a *collector*
job after all the copies (see :mod:`zasync.model.dependencies`), whose
result maps each worker's UUID to what its copy returned (or the error, as
text).  The collector is what :func:`broadcast` returns.

A worker that stops, or is found dead, before it ran its copy cannot run it
any more: its record's deactivation marks the copy to fail without running
(``AbortedError``), and the collector then reports that.
"""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Callable
from typing import Any

from zasync.errors import InvalidValueError
from zasync.interfaces import PENDING
from zasync.model.failure import Failure
from zasync.model.job import Job, as_job


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
        still = [c for c in record._targeted if c.status == PENDING]
        record._targeted = (*still, copy)
        copies.append(copy)
    collector: Job[dict[str, Any]] = Job(collect_broadcast, *copies)
    queue.put(collector, after=copies, on_dependency_failure="run")
    return collector


def collect_broadcast(*copies: Job[Any]) -> dict[str, Any]:
    """The collector's call: each copy's result by the UUID of the worker it was for."""
    found: dict[str, Any] = {}
    for copy in copies:
        worker = str(uuid_module.UUID(int=copy._target)) if copy._target else "?"
        result = copy.result
        found[worker] = str(result) if isinstance(result, Failure) else result
    return found


def admits(job: Any, claimer: uuid_module.UUID | None) -> bool:
    """True if ``claimer`` may claim ``job``: it is not targeted, or targeted at it."""
    target = job._target
    return target is None or (claimer is not None and claimer.int == target)


def abandon_targeted(record: Any) -> None:
    """A dispatcher stops: the copies targeted at it that it did not claim will fail."""
    for copy in record._targeted:
        if copy._p_jar is not None and copy.status == PENDING:
            copy._unmet = f"its worker {record.UUID} stopped before it ran"
    record._targeted = ()
