"""Several claimed jobs run in one transaction: the opt-in batch mode of an agent.

Each job normally commits its result (with the changes its code made) alone:
one storage commit, with its fsync or its round trips to a server, per job.
An agent with ``batch`` > 1 lets a worker thread run up to that many claimed
jobs in one transaction instead, with a savepoint before each:

* a job whose code raises is rolled back to its savepoint alone; the others
  go on, and once their commit is done the failure is handled exactly as
  in the normal mode (retry policy, stored failure, callbacks);
* a job's changes and its result still commit together, and only together;
* when the batch's commit fails, nothing of it is stored: after a conflict
  each job's retry policy decides, as after a conflict at its own commit
  (the default policy runs it again; ``NeverRetry`` fails it); after any
  other failure (a full disk, a lost server, a state that cannot be
  pickled), which no job can be blamed for, each job runs again alone.

So the guarantees are those of the normal mode, but two: a job's result is
stored only when its whole batch commits (later, by up to the run time of the
batch's other jobs), and a job whose code ran may run once more, even with
``NeverRetry``, after its batch's commit failed (not by a conflict) because
of *another* job of the batch.  Jobs that
commit by themselves in the middle of their run do not belong in a batch
agent: their commit would store the results of the jobs run before them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from zasync import _counters
from zasync.interfaces import ACTIVE, IJob
from zasync.model._pickling import pickling_error
from zasync.model.failure import Failure
from zasync.model.job import Job, is_outcome
from zasync.model.tx import TRANSACTION_ERRORS, abort_quietly

events_log = logging.getLogger("zasync.events")


@dataclass
class BatchRun:
    """What became of a batch: each job's result, and the jobs to run again alone."""

    results: list[tuple[Job[Any], Any]] = field(default_factory=list)
    again: list[Job[Any]] = field(default_factory=list)


@dataclass
class _Staged:
    job: Job[Any]
    result: Any
    final: bool


def batchable(job: Job[Any]) -> bool:
    """Whether a job may run in a batch: not one that wraps another job's method.

    Those (``handleInterrupt`` after a crash, ``resumeCallbacks``, ``fail``)
    commit by themselves, which a batch's savepoints cannot survive.
    """
    return not IJob.providedBy(job._callable_root)


def run_batch(
    jobs: Sequence[Job[Any]],
    tm: Any,
    starting: Callable[[Job[Any]], None] = lambda job: None,
    finished: Callable[[Job[Any]], None] = lambda job: None,
) -> BatchRun:
    """Run claimed (ACTIVE) ``jobs`` in the current transaction of ``tm``, then commit once.

    ``starting(job)`` and ``finished(job)`` are called around each job's
    code (the worker sets its per-thread job there).  See the module
    documentation for what happens when a job fails or the commit does.

    A savepoint gives new objects their ids long before the commit; zasync's
    ZEO clients refuse to store one under an id given out before a
    reconnection (:mod:`zasync.storage.fresh_oids`), so such a batch's
    commit fails and its jobs run again alone.
    """
    run = BatchRun()
    staged: list[_Staged] = []
    raised: list[tuple[Job[Any], Failure]] = []
    for index, job in enumerate(jobs):
        if job._status != ACTIVE:
            # Moved on since the worker checked it, in an earlier transaction
            # (cancelled, handed to another worker): the usual way decides.
            run.again.append(job)
            continue
        try:
            # Optimistic: a data manager without savepoints (a mailer, say) fails
            # only if a rollback is needed; then the batch so far runs again alone.
            savepoint = tm.savepoint(optimistic=True)
        except Exception:
            # What an earlier job changed cannot be stored: nothing of the batch
            # can, so every job not yet done runs alone, where the culprit fails.
            abort_quietly(tm)
            run.again.extend([*(s.job for s in staged), *jobs[index:]])
            staged = []
            break
        starting(job)
        try:
            result = job.callable(*list(job._args), **dict(job._kwargs))
            unstorable = pickling_error(result)
            if unstorable is not None:
                raise unstorable
            final = job._set_result(result, tm)
        except BaseException as error:
            if not is_outcome(error):
                raise
            failure = Failure()
            if not _roll_back(savepoint, tm):
                # The savepoint cannot be rolled back (the job committed by itself,
                # or a data manager joined that has no savepoints): everything is
                # aborted, and the jobs run before it run again, alone.
                run.again.extend(s.job for s in staged)
                staged = []
            raised.append((job, failure))
            continue
        finally:
            finished(job)
        staged.append(_Staged(job, result, final))
    if staged:
        failed_commit = _commit(staged, tm)
        if failed_commit is not None:
            if failed_commit.check(*TRANSACTION_ERRORS):
                # A conflict: each job's retry policy decides, as at its own commit.
                raised.extend((s.job, failed_commit) for s in staged)
            else:  # no telling which job made it fail: each runs again alone
                run.again.extend(s.job for s in staged)
            staged = []
    for item in staged:
        run.results.append((item.job, item.job._after_result_commit(item.result, item.final, tm)))
    for job, failure in raised:
        starting(job)
        try:
            outcome = job._run(list(job._args), dict(job._kwargs), tm, raised=failure)
        finally:
            finished(job)
        run.results.append((job, outcome))
    return run


def _roll_back(savepoint: Any, tm: Any) -> bool:
    """Undo one job's changes; False if its savepoint no longer exists (everything is aborted)."""
    try:
        savepoint.rollback()
    except Exception:
        abort_quietly(tm)
        return False
    return True


def _commit(staged: list[_Staged], tm: Any) -> Failure | None:
    """Commit the batch; the failure (everything aborted) if the commit failed."""
    try:
        tm.get().note(f"zasync: results of {len(staged)} jobs")
        tm.commit()
    except BaseException as error:
        failure = Failure()
        abort_quietly(tm)
        if not is_outcome(error):
            raise
        if isinstance(error, TRANSACTION_ERRORS):
            _counters.count_conflict("job", error)
        events_log.info(
            "the commit of a batch of %d jobs failed (%s: %s); %s",
            len(staged),
            failure.type_name,
            failure.getErrorMessage(),
            "their retry policies decide"
            if isinstance(error, TRANSACTION_ERRORS)
            else "each runs again alone",
        )
        return failure
    return None
