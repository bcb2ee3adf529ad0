"""Per-thread facts the persistent model needs from the runtime.

Inside a dispatcher's threads, a job that completes does not move itself from
its agent to the agent's completed collection: the dispatcher files completed
jobs in its next claim transaction.  That keeps a worker's commit to the job
alone, so concurrent workers do not conflict on their shared agent.
"""

from __future__ import annotations

import threading

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
