"""Every exception zasync raises on purpose, in one tree under :class:`ZasyncError`.

Each class's docstring says what happened and what to do about it; its first
paragraph is the message of an instance raised without one.  An error about
a job or a queue carries it as ``error.job`` or ``error.queue``.

Errors that reject an argument also subclass :class:`ValueError` (and
lookups :class:`LookupError`), so code catching the builtin classes keeps
working.  The classes are also importable from :mod:`zasync.interfaces`,
where they were defined before: failures stored by older versions name them
there.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = [
    "AbortedError",
    "AgentBusyError",
    "AlreadyActivatedError",
    "AlreadyRegisteredError",
    "BadStatusError",
    "CancelledError",
    "ConfigurationError",
    "DependencyFailedError",
    "InvalidValueError",
    "NaiveDatetimeError",
    "NoCompletedJobsError",
    "NoRunningJobError",
    "NotActivatedError",
    "NotHereError",
    "NotNewError",
    "NotPicklableError",
    "NotQueuedBeforeError",
    "NotStoredError",
    "QuotaFullError",
    "RetryPolicyError",
    "TimeLimitError",
    "TimeoutError",
    "UnknownJobError",
    "UnknownQuotaError",
    "UnknownRetryPolicyError",
    "UnloadableJobError",
    "ZasyncError",
]


def _default_message(cls: type) -> str:
    """The first paragraph of the nearest docstring, on one line."""
    doc = inspect.getdoc(cls) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


class ZasyncError(Exception):
    """The root of every exception zasync raises on purpose.

    ``ZasyncError(message, *args, job=..., queue=...)``: without a message,
    the first paragraph of the class's docstring is the message.
    """

    #: The job the error concerns, if any.
    job: Any = None
    #: The queue the error concerns, if any.
    queue: Any = None

    def __init__(self, *args: Any, job: Any = None, queue: Any = None) -> None:
        super().__init__(*(args or (_default_message(type(self)),)))
        self.job = job
        self.queue = queue

    def __reduce__(self) -> tuple[Any, ...]:
        # Stored failures keep a copy of the error: the job and queue are
        # live objects of one connection, not part of what went wrong.
        state = {k: v for k, v in self.__dict__.items() if k not in ("job", "queue")}
        return (type(self), self.args, state) if state else (type(self), self.args)


# -- about jobs ----------------------------------------------------------------


class BadStatusError(ZasyncError):
    """A method was called on a job whose status does not allow it.

    This is a programming error: check ``job.status`` first, or use the method
    meant for that status (for example ``queue.pull`` for a pending job).
    """


class NotNewError(BadStatusError, ValueError):
    """The job is already in a queue or an agent, or has run: only a NEW job can be put.

    Put a new ``Job`` instead, or take the job out first (``queue.pull`` or
    ``queue.remove`` for a pending job).
    """


class NotQueuedBeforeError(ZasyncError, ValueError):
    """Only a job that was put in a queue before can be put back: use ``queue.put`` instead."""


class NotHereError(ZasyncError, ValueError):
    """The job is not in this container (queue or agent): look for it in ``job.parent``."""


class NotStoredError(ZasyncError, ValueError):
    """The job is not stored in a database yet, so it has no id.

    Put it in a queue and commit the transaction first.
    """


class AbortedError(ZasyncError):
    """The job was interrupted (its worker died) and its retry policy gave up.

    Recorded as the job's failure by ``Job.handleInterrupt``.
    """


class TimeoutError(ZasyncError):
    """The job did not start before ``begin_after + begin_by``.

    This is zasync's own class and not the builtin ``TimeoutError``; it is the
    default error that ``Job.fail`` records.
    """


class TimeLimitError(ZasyncError):
    """The job ran longer than its time limit (``timeout=``) and was stopped.

    Recorded as the job's failure by its worker: nothing the job changed is
    committed, and its callbacks run.  Inside the job it is also raised at
    the line that was running, so that code which stops on it stops early.
    """


class DependencyFailedError(ZasyncError):
    """A job this one was put ``after`` failed, was cancelled or was removed.

    The job then fails with this error without running (its callbacks run),
    unless it was put with ``on_dependency_failure="run"``.
    """


class CancelledError(ZasyncError):
    """The job was cancelled: by ``zasync cancel``, the dashboard or ``zasync.cancel``.

    A pending job cancelled that way completes at once with this failure (its
    callbacks run).  A running job only sees a request (``local.cancel_requested()``)
    and raises this itself, through ``local.raise_if_cancelled()``, when it
    chooses to stop.
    """


class UnknownJobError(ZasyncError, LookupError):
    """No job has this id in the database (a wrong number, or it was pruned or packed away).

    Job ids are the decimal object ids that ``zasync put`` and ``zasync jobs``
    print; ``0x``-prefixed hexadecimal is accepted too.
    """


class NotPicklableError(ZasyncError, ValueError):
    """A callable or argument given to a queue cannot be stored in the database.

    Lambdas, functions defined inside other functions and objects holding open
    files or locks cannot be pickled. Define the function at module level and
    pass plain data, or persistent objects, as arguments.
    """


class UnknownRetryPolicyError(ZasyncError, LookupError):
    """A job names a retry policy that is not registered in this process.

    Raised by ``put`` (with the names that are registered), and recorded as
    the failure of a job whose worker does not know its policy's name.
    """


class RetryPolicyError(ZasyncError):
    """A job's retry policy raised while deciding what to do with the job.

    The job fails with this error (its cause chained) instead of retrying
    without end: a policy is code, and code has bugs.
    """


class UnloadableJobError(ZasyncError):
    """A job's record cannot be loaded or stored: its code or an argument's is gone.

    Typical causes: a deploy removed or renamed the module of the job's
    callable (or of an argument's class), or the record is damaged.  Such a
    job is quarantined out of its queue (see ``Queue.quarantined``) so that
    it stops nothing; ``zasync retry`` puts it back once the code is there,
    ``zasync remove`` drops it without loading it.
    """


class NoRunningJobError(ZasyncError, ValueError):
    """No job is running in this thread: use ``zasync.local`` inside a job run by a worker."""


# -- about values and settings ---------------------------------------------------------


class InvalidValueError(ZasyncError, ValueError):
    """A value given to zasync cannot be used: see the message for what is expected."""


class NaiveDatetimeError(InvalidValueError):
    """A datetime without a time zone was given: pass an aware one, e.g. ``datetime.now(UTC)``."""


class ConfigurationError(InvalidValueError):
    """A setting (a size, an interval, a name, a token) cannot be used: see the message."""


# -- about quotas -------------------------------------------------------------------


class UnknownQuotaError(ZasyncError, ValueError):
    """A job names a quota its queue does not have: create it with ``queue.quotas.create(name)``.

    ``error.name`` is the unknown name.
    """

    def __init__(
        self, *args: Any, name: str | None = None, job: Any = None, queue: Any = None
    ) -> None:
        super().__init__(*args, job=job, queue=queue)
        self.name = name


class QuotaFullError(ZasyncError, ValueError):
    """The quota already holds as many jobs as its size: wait for one to finish, or resize it."""


# -- about dispatchers and agents ---------------------------------------------------------


class AlreadyRegisteredError(ZasyncError, ValueError):
    """A dispatcher with this UUID is already registered in the queue.

    Each worker process needs its own UUID; unregister a dead one first.
    """


class AlreadyActivatedError(ZasyncError, ValueError):
    """The dispatcher is already activated: deactivate it first (another process may own it)."""


class NotActivatedError(ZasyncError, ValueError):
    """The dispatcher is not activated: activate it first."""


class AgentBusyError(ZasyncError, ValueError):
    """The agent holds jobs: let them finish (or deactivate the dispatcher) before moving it."""


class NoCompletedJobsError(ZasyncError, ValueError):
    """There are no completed jobs in this collection (in that range)."""
