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
