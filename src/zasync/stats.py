"""Process-wide counters of what went wrong and was retried.

Conflict retries are the figure to watch as workers grow: each one is work
done twice.  They are counted where they are caught: ``job`` for a job's own
run and result commit, ``bookkeeping`` for everything zasync commits around
jobs (claims, filing, pings, interruptions, callbacks' bookkeeping).  A
worker logs them when it stops; metrics and status views read them here.
"""

from __future__ import annotations

import threading
from collections import Counter

_lock = threading.Lock()
_conflicts: Counter[str] = Counter()


def count_conflict(where: str) -> None:
    """Count one conflict retry (or give-up) caught at ``where``."""
    with _lock:
        _conflicts[where] += 1


def conflict_counts() -> dict[str, int]:
    """Conflict retries so far in this process, by where they were caught."""
    with _lock:
        return dict(_conflicts)


def reset() -> None:
    """Forget the counts (tests)."""
    with _lock:
        _conflicts.clear()
