"""Dependencies: ``queue.put(job, after=[a, b])`` makes ``job`` due once ``a`` and ``b`` are done.

A job put *after* others that have not finished yet **waits** in its queue's
``Queue._waiting`` (an OOBTree made on first use) rather than in a lane, so
no claim sees it.  Each unfinished dependency gets a callback,
:func:`dependency_done`; callbacks are durable and run by the worker that
finished the dependency, in a transaction of their own, after the
dependency's result committed.  The callback of whichever dependency
finished last therefore sees every dependency's result, and moves the
waiting job into a lane, due at once.

What a dependency that did not succeed (failed, cancelled, removed from its
queue, discarded from quarantine) does is chosen per job:

* ``on_dependency_failure="fail"`` (the default): the job fails with
  :class:`~zasync.errors.DependencyFailedError` naming it, without running;
  its callbacks run.  (It goes into a lane marked as doomed; the worker that
  claims it records the failure, as it does for a missed ``begin_by``.)
* ``"run"``: the job runs anyway, once every dependency has finished.

A waiting job can be cancelled or removed like any pending job; the
callbacks left on its dependencies then find it gone and do nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from BTrees.OOBTree import OOBTree

from zasync._logtext import one_line
from zasync.errors import InvalidValueError
from zasync.interfaces import ACTIVE, ASSIGNED, CALLBACKS, COMPLETED, PENDING, IJob
from zasync.model._base import database_name, oid_int
from zasync.model.failure import Failure
from zasync.model.quarantine import load_error

if TYPE_CHECKING:
    from zasync.model.job import Job

#: The queue a job waits in (typed loosely: zasync.model.queue imports this module).
Queue = Any

FAIL: Final = "fail"
RUN: Final = "run"
ON_FAILURE = (FAIL, RUN)
MAX_DEPENDENCIES = 1000
#: How long the reason a job fails without running may get (one dependency's, all of them).
MAX_REASON = 200
MAX_UNMET = 500
_DONE = (CALLBACKS, COMPLETED)


def check_dependencies(
    job: Job[Any], after: Any, on_failure: Any, queue: Queue
) -> tuple[Job[Any], ...]:
    """The dependencies ``after`` names, checked; InvalidValueError before anything changes."""
    if on_failure not in ON_FAILURE:
        raise InvalidValueError(
            f"on_dependency_failure must be 'fail' or 'run', not {on_failure!r}", job=job
        )
    if after is None:
        return ()
    if IJob.providedBy(after) or not isinstance(after, Iterable):
        raise InvalidValueError("after= takes a list of jobs (after=[a, b])", job=job)
    found = tuple(after)
    if len(found) > MAX_DEPENDENCIES:
        raise InvalidValueError(f"a job may wait for at most {MAX_DEPENDENCIES} jobs", job=job)
    home = database_name(queue)
    for dependency in found:
        if not IJob.providedBy(dependency):
            raise InvalidValueError(
                f"after= takes jobs, not {dependency!r:.80}", job=job, queue=queue
            )
        if dependency is job:
            raise InvalidValueError("a job cannot wait for itself", job=job, queue=queue)
        if dependency._p_jar is None:
            raise InvalidValueError(
                f"{dependency!r} is not stored yet: put it in a queue first", job=job, queue=queue
            )
        if database_name(dependency) != home:
            raise InvalidValueError(
                f"{dependency!r} is in database {database_name(dependency)!r}, not "
                f"{home!r}: a job can only wait for jobs of its own database",
                job=job,
                queue=queue,
            )
        if dependency.status not in (PENDING, ASSIGNED, ACTIVE, *_DONE):
            raise InvalidValueError(
                f"{dependency!r} is {dependency.status} and in no queue: it would never "
                "finish; put it in a queue first",
                job=job,
                queue=queue,
            )
    return found


def outcome(dependency: Job[Any], gone: bytes | None = None) -> str | None:
    """None while ``dependency`` runs or waits; ``''`` once it succeeded; else why it did not.

    ``gone``: the oid of a job just dropped (discarded from quarantine, or
    unloadable and removed), which will never run.
    """
    if gone is not None and dependency._p_oid == gone:
        return f"job {oid_int(dependency)} was dropped from its queue (quarantined or unloadable)"
    broken = load_error(dependency)
    if broken is not None:  # discarded from quarantine: it will never run
        return f"job {oid_int(dependency)} cannot be loaded: {broken}"
    status = dependency.status
    if status in _DONE:
        result = dependency.result
        if isinstance(result, Failure):
            return f"job {oid_int(dependency)} failed: {_first_line(result)}"
        return ""
    if status in (PENDING, ASSIGNED, ACTIVE):
        return None
    return f"job {oid_int(dependency)} was removed from its queue"


def wait(queue: Queue, job: Job[Any], after: tuple[Job[Any], ...], on_failure: str) -> bool:
    """Make ``job`` wait for ``after`` in ``queue``; False if all are done (it can be put now)."""
    from zasync.model.job import Job as JobClass

    job._after = (after, on_failure)
    pending = [d for d in after if outcome(d) is None]
    if not pending:
        job._unmet = _unmet(job)
        return False
    if queue._waiting is None:
        queue._waiting = OOBTree()
    queue._waiting[_key(job)] = job
    job.parent = queue
    for dependency in pending:
        dependency.addCallback(JobClass(dependency_done, job))
    return True


def _unmet(job: Job[Any], gone: bytes | None = None) -> str | None:
    """Why ``job`` must fail (its dependencies all finished), or None if it may run."""
    after, on_failure = job._after or ((), RUN)
    if on_failure == RUN:
        return None
    reasons = [why for why in (outcome(d, gone) for d in after) if why]
    text = "; ".join(reasons)
    return one_line(text, MAX_UNMET) or None


def _first_line(failure: Failure) -> str:
    """A failure as one short line: its type and the first line of its message."""
    message = failure.getErrorMessage().strip().splitlines()
    text = f"{failure.type_name}: {message[0]}" if message else failure.type_name
    return one_line(text, MAX_REASON)


def _key(job: Job[Any]) -> tuple[str, bytes]:
    return (database_name(job) or "", job._p_oid)


def is_waiting(queue: Any, job: Job[Any]) -> bool:
    """True while ``job`` waits for its dependencies in ``queue``."""
    tree = getattr(queue, "_waiting", None)
    return tree is not None and job._p_oid is not None and tree.get(_key(job)) is job


def settle(job: Job[Any], gone: bytes | None = None) -> bool:
    """Move ``job`` into a lane if every dependency finished; True if it moved."""
    queue = job.parent
    if not is_waiting(queue, job):
        return False  # released already, cancelled or removed
    after, _on_failure = job._after or ((), RUN)
    if any(outcome(d, gone) is None for d in after):
        return False
    del queue._waiting[_key(job)]
    job.parent = None
    job._unmet = _unmet(job, gone)
    queue.insert_due(job)
    return True


def dependency_done(job: Job[Any], result: Any) -> None:
    """The callback a dependency runs when it finishes: ``job`` may now be due."""
    settle(job)


def drop_waiting(queue: Queue, job: Job[Any]) -> bool:
    """Take a waiting ``job`` out of ``queue`` (removed, cancelled); True if it was waiting."""
    tree = queue._waiting
    if tree is None or not is_waiting(queue, job):
        return False
    del tree[_key(job)]
    job.parent = None
    return True


def dependants(job: Job[Any]) -> list[Job[Any]]:
    """The jobs that wait for ``job`` (through its :func:`dependency_done` callbacks)."""
    found: list[Job[Any]] = []
    for callback in job.callbacks:
        if callback._callable_name is None and callback._callable_root is dependency_done:
            found.extend(a for a in callback.args if IJob.providedBy(a))
    return found


def settle_dependants_of(job: Job[Any]) -> None:
    """``job`` left its queue without finishing (removed): its waiting dependants settle now."""
    for dependant in dependants(job):
        settle(dependant)


def settle_dependants_of_oid(queue: Queue, oid: bytes) -> None:
    """The same for a job that cannot be loaded (dropped or discarded): found by oid.

    Its dependants may wait in any queue of the database.
    """
    siblings = getattr(queue.parent, "values", None)
    for other in siblings() if callable(siblings) else [queue]:
        if other._waiting is None:
            continue
        for waiting in list(other._waiting.values()):
            if load_error(waiting) is not None:
                continue
            after, _on_failure = waiting._after or ((), RUN)
            if any(d._p_oid == oid for d in after):
                settle(waiting, gone=oid)


def drop_waiting_oid(queue: Queue, oid: bytes) -> bool:
    """Take a waiting job that cannot be loaded out of ``queue``, by oid; True if found."""
    tree = queue._waiting
    if tree is None:
        return False
    keys = [key for key in tree if key[1] == oid]
    for key in keys:
        del tree[key]
    return bool(keys)
