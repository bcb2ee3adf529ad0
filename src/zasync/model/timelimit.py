"""Run-time limits: how long a job may run before its worker fails it.

A job's limit, in seconds, is the first of these that is set:

* its own, ``queue.put(job, timeout=30)`` (``Job._time_limit``);
* its worker agent's, ``AgentSpec(timeout=...)`` or ``timeout`` in a
  worker's ``[[agent]]`` table: a setting of the worker, not stored;
* its queue's, ``queue.default_timeout = 600`` (``Queue._default_timeout``).

The limit counts from when a worker thread starts the job until its result
is committed (retries of a conflicting commit included; its callbacks and
any job it waits for are not).  A job past it is failed by its worker, in a
transaction of the worker's own, with :class:`~zasync.errors.TimeLimitError`
(or rescheduled, if its retry policy retries that error): the job's own
transaction is never committed, since the job's record changed under it, and
its callbacks run.  How the worker stops the job's thread is the runtime's
part (:mod:`zasync.runtime.timelimits`).

zasync's own jobs (those that wrap a method of another job, such as a
crashed job's ``handleInterrupt``; a schedule's trigger; the steps of
``serial`` and ``parallel``) take no default limit: cutting them short would
stop a schedule or a chain.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable
from typing import Any, Final

from zasync.errors import InvalidValueError, TimeLimitError
from zasync.interfaces import ACTIVE, IJob
from zasync.model.failure import Failure
from zasync.model.job import _TIME_DECISIONS, MOVED_ON, Job, PolicyBroke
from zasync.model.tx import never_fail

#: The longest limit accepted: a year (and a day), in seconds.
MAX_TIME_LIMIT: Final = 366 * 86400.0

#: What :func:`time_out` did: the job failed, or its retry policy put it back in its queue.
FAILED: Final = "failed"
RESCHEDULED: Final = "rescheduled"


def check_timeout(value: Any, what: str = "timeout") -> float | None:
    """``value`` as seconds (a float), or None; refuse anything else with a one-line error.

    Takes a number of seconds (not a bool) or a ``datetime.timedelta``, more
    than zero and at most :data:`MAX_TIME_LIMIT`.
    """
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValueError(
            f"{what} must be a number of seconds or a datetime.timedelta, "
            f"not {type(value).__name__}"
        )
    else:
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
    if math.isnan(seconds):
        raise InvalidValueError(f"{what} must be a number of seconds, not NaN")
    if seconds <= 0:
        raise InvalidValueError(f"{what} must be more than 0 seconds (got {value!r:.40})")
    if seconds > MAX_TIME_LIMIT:
        raise InvalidValueError(
            f"{what} must be at most {MAX_TIME_LIMIT:.0f} seconds (a year), got {value!r:.40}"
        )
    return seconds


def limit_for(job: Job[Any], agent_default: float | None) -> float | None:
    """The limit in seconds that applies to ``job`` run by an agent with ``agent_default``."""
    own = job._time_limit
    if own is not None:
        return own
    default = agent_default
    if default is None:
        queue = job.queue
        default = None if queue is None else queue._default_timeout
    if default is None or _bookkeeping(job._callable_root):
        return None
    return default


def _bookkeeping(root: Any) -> bool:
    """zasync's own jobs (another job's method, a schedule's trigger...): never cut short."""
    if IJob.providedBy(root):
        return True
    module = getattr(root, "__module__", None) or ""
    return module == "zasync" or (module.startswith("zasync.") and module != "zasync.demo")


def describe_limit(limit: float) -> str:
    """The message of the failure a job gets when it runs past ``limit`` seconds."""
    return f"the job ran longer than its time limit of {limit:g} s"


def time_out(
    job: Job[Any],
    started_us: int | None,
    still_here: Callable[[Job[Any]], bool],
    limit: float,
    tm: Any,
    busy: Callable[[], bool] = lambda: False,
) -> str | None:
    """Fail ``job``, or reschedule it as its retry policy decides; say which (or None).

    ``job`` is loaded in a connection of the caller's (with transaction
    manager ``tm``), not the one running it.  Nothing is done, and False is
    returned, unless the job is still the run that started at ``started_us``
    (integer microseconds) and ``still_here`` says it is still held by the
    worker that ran it: a job that committed its result meanwhile, or was
    handed to another worker, is left alone (None), and so is one whose
    worker says it is ``busy`` committing its outcome (asked again at each
    try: the job's commit and this one write the job's record, so one of
    them conflicts, and the retry sees what the other did).  Returns :data:`FAILED`
    or :data:`RESCHEDULED`.  The caller runs the callbacks
    (``job._run_callbacks(tm)``) once it has stopped the job's thread.
    """
    failure = Failure(TimeLimitError(describe_limit(limit)))

    def same_run() -> bool:
        return (
            job.status == ACTIVE
            and job._active_start == started_us
            and still_here(job)
            and not busy()
        )

    tm.begin()
    if not same_run():
        return None
    data_cache: dict[str, Any] = {}
    decision = job._getRetry("jobError", tm, failure, data_cache)
    when: Any = None
    if isinstance(decision, PolicyBroke):
        failure = decision.failure
    elif isinstance(decision, _TIME_DECISIONS):
        when = decision
    elif decision:
        when = datetime.timedelta(0)  # "again": it cannot run again in the stuck thread

    def act() -> Any:
        if not same_run():
            return MOVED_ON
        if when is not None:
            job._reschedule(when, data_cache, None, str(failure))
            return RESCHEDULED
        job._finish(failure, data_cache)
        return FAILED

    outcome = never_fail(act, lambda: f"stopping {job!r}, past its time limit", tm)
    if outcome is MOVED_ON:
        return None
    if outcome == FAILED:
        job._log_completion(failure)
    return str(outcome)
