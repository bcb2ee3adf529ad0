"""Per-thread facts the persistent model needs from the runtime.

Inside a dispatcher's threads, a job that completes does not move itself from
its agent to the agent's completed collection: the dispatcher files completed
jobs in its next claim transaction.  That keeps a worker's commit to the job
alone, so concurrent workers do not conflict on their shared agent.

A worker thread running a job under a time limit also installs a *run
guard*, through which the job calls its code, so that the worker can stop
that code, and only that code, when the limit passes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

_state = threading.local()


def filing_deferred() -> bool:
    """True in threads where completed jobs are filed later by the dispatcher."""
    return bool(getattr(_state, "defer_filing", False))


def set_filing_deferred(value: bool) -> None:
    """Declare whether this thread defers filing completed jobs to the dispatcher."""
    _state.defer_filing = value


def still_ours(job: object) -> bool:
    """Whether this thread may go on running ``job`` (a retry is about to start).

    A dispatcher's worker thread installs a check: after its dispatcher was
    deactivated, the job was handed back and must not be run again here.
    """
    check = getattr(_state, "ownership_check", None)
    return True if check is None else bool(check(job))


def set_ownership_check(check: object) -> None:
    """Install (or, with None, remove) this thread's ownership check."""
    _state.ownership_check = check


class RunGuard(Protocol):
    """What watches the code of a job running under a time limit (see ``run_user_code``)."""

    job: object
    #: The job was stopped for running too long: this thread must leave it alone.
    expired: bool

    def call(self, fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Call ``fn(*args, **kwargs)`` where the guard can stop it."""

    def result_commit_starts(self) -> None:
        """The job's outcome is about to be committed: its worker must not stop it now."""

    def finish(self) -> None:
        """The job's outcome is committed: its time limit no longer applies."""

    def enter_critical(self) -> None:
        """A commit or abort begins in this thread: the job's code must not be interrupted."""

    def leave_critical(self) -> None:
        """It ended (an interruption held back meanwhile is raised now)."""


def run_user_code(
    job: object, fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> Any:
    """Call a job's code: through this thread's run guard if it watches ``job``, else plainly."""
    guard: RunGuard | None = getattr(_state, "guard", None)
    if guard is None or guard.job is not job:
        return fn(*args, **kwargs)
    return guard.call(fn, args, kwargs)


def run_guard() -> RunGuard | None:
    """The guard of the job this thread runs under a time limit, or None."""
    guard: RunGuard | None = getattr(_state, "guard", None)
    return guard


def result_commit_starts(job: object) -> None:
    """``job``, run by this thread, is about to commit its outcome (see RunGuard)."""
    guard: RunGuard | None = getattr(_state, "guard", None)
    if guard is not None and guard.job is job:
        guard.result_commit_starts()


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """A commit or an abort, which the time-limit interruption must not break in the middle."""
    guard: RunGuard | None = getattr(_state, "guard", None)
    if guard is None:
        yield
        return
    guard.enter_critical()
    try:
        yield
    finally:
        guard.leave_critical()


def result_committed(job: object) -> None:
    """``job``, run by this thread, committed its outcome: its run is over (see RunGuard)."""
    guard: RunGuard | None = getattr(_state, "guard", None)
    if guard is not None and guard.job is job:
        guard.finish()


def run_watched(job: object) -> bool:
    """True if this thread runs ``job`` under a time limit."""
    guard: RunGuard | None = getattr(_state, "guard", None)
    return guard is not None and guard.job is job


def run_stopped(job: object) -> bool:
    """True if ``job``, run by this thread, was stopped at its time limit: leave it alone."""
    guard: RunGuard | None = getattr(_state, "guard", None)
    return guard is not None and guard.job is job and guard.expired


def set_run_guard(guard: RunGuard | None) -> None:
    """Install (or, with None, remove) the guard of the job this thread runs."""
    _state.guard = guard
