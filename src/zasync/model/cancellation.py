"""Cancelling jobs: at once while they are pending, cooperatively once they run.

* A **pending** job is taken out of its queue and completes with a
  ``Failure`` of :class:`~zasync.interfaces.CancelledError`; its callbacks
  run, as for any failure.  It is kept in ``queue.cancelled`` so that
  monitoring can still find it.
* A **claimed or running** job cannot be stopped from outside without
  losing the atomicity of its transaction, so it gets a *request*: the
  ``'zasync.cancel'`` annotation, written in a separate transaction.  The
  job asks ``zasync.local.cancel_requested()`` (which reads the last
  committed value, not its own transaction's snapshot) and stops when it
  chooses, typically with ``zasync.local.raise_if_cancelled()``.
* A job that has its result (CALLBACKS or COMPLETED) cannot be cancelled.
"""

from __future__ import annotations

from typing import Any

from zasync import clock
from zasync.interfaces import (
    ACTIVE,
    ASSIGNED,
    PENDING,
    BadStatusError,
    CancelledError,
    IQueue,
)
from zasync.model.failure import Failure
from zasync.model.job import Job
from zasync.model.tx import in_fresh_connection, never_fail
from zasync.schema import CANCEL

CANCELLED = "cancelled"
REQUESTED = "requested"


def _request(reason: str | None) -> dict[str, Any]:
    return {"at": clock.utcnow().isoformat(), "reason": reason}


def cancel(job: Job[Any], reason: str | None = None) -> str:
    """Cancel ``job``; return ``'cancelled'`` (it was pending) or ``'requested'`` (it runs).

    For a pending job this commits the job's transaction manager (like
    ``job.fail()``): the job leaves its queue and completes with
    ``Failure(CancelledError(reason))``, then its callbacks run and commit.
    A ``ConflictError`` at that first commit propagates, with nothing
    changed: the job was probably claimed meanwhile; read it again and retry.

    For an ASSIGNED or ACTIVE job the request is written and committed in a
    separate connection (the caller's transaction is not touched), and
    ``'requested'`` is returned.  BadStatusError for a job that has a result
    already, or is in no queue.
    """
    status = job.status
    if status == PENDING and IQueue.providedBy(job.parent):
        _cancel_pending(job, reason)
        return CANCELLED
    if status in (ASSIGNED, ACTIVE):
        request_cancel(job, reason)
        return REQUESTED
    raise BadStatusError(
        f"cannot cancel {job!r}: it is {status} (only pending, assigned or active jobs can be)"
    )


def _cancel_pending(job: Job[Any], reason: str | None) -> None:
    tm = job._transaction_manager()
    queue = job.parent
    queue.remove(job, settle_dependants=False)  # its callbacks tell them, with the reason
    job.annotations[CANCEL] = _request(reason)
    failure = Failure(CancelledError(reason or "cancelled"))
    job._finish(failure)
    if not job.callbacks:
        queue.file_cancelled(job)
    tm.commit()
    job._log_completion(failure)
    if job.callbacks:
        # Filed only once its callbacks ran: while in no queue, they count as NEW
        # and can be called (in a queue they would look PENDING).
        job._run_callbacks(tm)
        never_fail(lambda: queue.file_cancelled(job), lambda: f"filing cancelled {job!r}", tm)


def request_cancel(job: Job[Any], reason: str | None = None) -> None:
    """Ask a running job to stop: write the request and commit it in a separate connection."""
    if job._p_jar is None:
        raise BadStatusError(f"{job!r} is not stored in a database")
    request = _request(reason)

    def write(job_there: Any) -> None:
        job_there.annotations[CANCEL] = request

    in_fresh_connection(job._p_jar.db(), job._p_oid, write, commit=True)


def cancel_request(job: Job[Any]) -> dict[str, Any] | None:
    """The cancellation request stored on ``job`` (as of its connection's view), or None."""
    value: dict[str, Any] | None = job.get_annotation(CANCEL)
    return value


def cancel_before_start(job: Job[Any]) -> bool:
    """Complete a claimed job as cancelled instead of running it, if a stop was asked.

    A worker calls this when a thread picks the job up: a request written
    while the job waited for a thread (claimed, not started) is honoured
    before any of its code runs.  Returns True if the job was cancelled.
    """
    request = cancel_request(job)
    if request is None or job.status != ACTIVE:
        return False
    tm = job._transaction_manager()
    failure = Failure(CancelledError(request.get("reason") or "cancelled"))
    never_fail(job._while((ACTIVE,), job._finish, failure), lambda: f"cancelling {job!r}", tm)
    job._log_completion(failure)
    job._run_callbacks(tm)
    return True
