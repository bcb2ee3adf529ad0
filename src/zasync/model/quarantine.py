"""Quarantine: jobs whose record cannot be loaded or stored, taken out of everyone's way.

A deploy that removes the module of a job's callable (or of an argument's
class), or a damaged record, makes a job that no worker can run, and whose
state cannot even be written back: ZODB loads a missing class as a
``Broken`` stand-in, which refuses to be pickled.  Left in its queue, such a
job would fail every claim transaction that touched it, and with them every
healthy job behind it.

So claims, dispatchers and worker threads check a job before they change it
(:func:`problem_of`, cheap: the job is loaded anyway) and, when a claim's
commit still fails, every job it chose (:func:`storing_problem`, the writer
the commit uses).  A job found unsound is moved, without being loaded or
written, from its lane or agent to its queue's quarantine, with one ERROR
line naming its id and the cause.  ``zasync retry`` puts a quarantined job
back once its code is deployed; ``zasync remove`` drops it.

Stored schema: ``Queue._quarantine`` is an ``OOBTree`` (made on first use)
mapping ``(database name, oid)`` to ``(job, cause text, time stamp in µs)``.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any

from ZODB.broken import Broken
from ZODB.serialize import ObjectWriter

from zasync import clock
from zasync.interfaces import IJob
from zasync.model.tx import TRANSACTION_ERRORS, disconnect_errors

events_log = logging.getLogger("zasync.events")

#: Cause texts are cut to this length: they are stored, listed and logged.
CAUSE_LIMIT = 500


@dataclass(frozen=True)
class QuarantinedJob:
    """One quarantined job, as listings show it."""

    id: int
    database: str
    job: Any
    cause: str
    when: Any  # datetime of quarantine


def describe(error: BaseException) -> str:
    """One line: ``ModuleNotFoundError: No module named 'x'``."""
    try:
        text = str(error)
    except Exception:
        text = "<no message>"
    line = f"{type(error).__name__}: {text}".splitlines()[0] if text else type(error).__name__
    return line[:CAUSE_LIMIT]


def _broken(value: Any) -> bool:
    return isinstance(value, Broken) or (isinstance(value, type) and issubclass(value, Broken))


def _broken_name(value: Any) -> str:
    cls = value if isinstance(value, type) else type(value)
    return f"{cls.__module__}.{cls.__name__}"


def load_error(job: Any) -> str | None:
    """Why the job's record cannot be loaded, or None if it loads.

    Conflicts and disconnects propagate: they are not the job's fault.
    """
    try:
        job._p_activate()
    except (*TRANSACTION_ERRORS, *disconnect_errors()):
        raise
    except Exception as error:
        return describe(error)
    return None


def problem_of(job: Any) -> str | None:
    """Why ``job`` cannot be run or written back, or None if it looks sound.

    Loads the job (see :func:`load_error`) and looks for ``Broken``
    stand-ins in its class, its callable and its top-level arguments.
    Cheap for a loaded job: it is on the claim path.
    """
    error = load_error(job)
    if error is not None:
        return f"its record cannot be loaded: {error}"
    if isinstance(job, Broken):
        return f"the job's class {_broken_name(job)} cannot be imported"
    root = job._callable_root
    if _broken(root):
        return f"its callable {_broken_name(root)} cannot be imported (module removed or renamed?)"
    for name, value in itertools.chain(enumerate(job._args), job._kwargs.items()):
        if _broken(value):
            return f"its argument {name!r}, a {_broken_name(value)}, cannot be imported"
    return None


def unsound(job: Any, careful: bool = False) -> tuple[Any, str] | None:
    """``(the job to quarantine, why)`` if ``job`` cannot be run, else None.

    A job that wraps a method of another job (``handleInterrupt`` after a
    crash, ``resumeCallbacks``, ``fail``) cannot be run either when that
    job is unsound; then that job is the one to quarantine: the wrapper is
    only a message about it.  ``careful`` also checks that the state can be
    written (see :func:`storing_problem`).
    """
    check = storing_problem if careful else problem_of
    problem = check(job)
    if problem is not None:
        return job, problem
    target = job._callable_root
    if target is not job and IJob.providedBy(target):
        inner = check(target)
        if inner is not None:
            return target, inner
    return None


def storing_problem(job: Any) -> str | None:
    """Why ``job``'s state cannot be written to the database, or None.

    Uses ZODB's own object writer, as a commit would; it pickles the state,
    so it is used only after a claim's commit failed, to find the culprit.
    """
    problem = problem_of(job)
    if problem is not None:
        return problem
    try:
        ObjectWriter(job).serialize(job)
    except (*TRANSACTION_ERRORS, *disconnect_errors()):
        raise
    except Exception as error:
        return f"its state cannot be stored: {describe(error)}"
    return None


def log_quarantined(job_id: int, queue_name: str | None, cause: str) -> None:
    """The one ERROR line for a job taken out of the way."""
    events_log.error(
        "job %d quarantined out of queue %r: %s. Deploy the code it needs and run "
        "`zasync retry %d`, or drop it with `zasync remove %d`",
        job_id,
        queue_name,
        cause,
        job_id,
        job_id,
    )


def stamp_now() -> int:
    """The time stored with a quarantined job."""
    return clock.to_stamp(clock.utcnow())
