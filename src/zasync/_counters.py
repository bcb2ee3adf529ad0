"""Process-wide counters of what went wrong and was retried (no dependency, no I/O).

Core modules count where something worth watching happens; the worker logs
the conflict figures when it stops and :mod:`zasync.ops.metrics` exports every
counter at scrape time.  Counting is a dictionary update under a lock.

Conflict retries are the figure to watch as workers grow: each one is work
done twice.  They are counted where they are caught: ``job`` for a job's own
run and result commit, ``bookkeeping`` for everything zasync commits around
jobs (claims, filing, pings, interruptions, callbacks' bookkeeping); and, apart,
by the class of the object the conflict was on, which says which structure
to look at when they are many.
"""

from __future__ import annotations

import logging
import threading

_log = logging.getLogger("zasync.conflicts")
_lock = threading.Lock()
_counts: dict[tuple[str, str], int] = {}

CONFLICT_RETRIES = "conflict_retries"
CONFLICTS_ON = "conflicts_on"


def add(name: str, label: str, amount: int = 1) -> None:
    """Add ``amount`` to the counter ``name`` for ``label``."""
    with _lock:
        _counts[(name, label)] = _counts.get((name, label), 0) + amount


def count_conflict(where: str, error: BaseException | None = None) -> None:
    """Count one transaction error retried (or given up) at ``where``, and what it was on."""
    add(CONFLICT_RETRIES, where)
    class_name = getattr(error, "class_name", None)
    add(CONFLICTS_ON, class_name if isinstance(class_name, str) and class_name else "unknown")
    _log.debug("conflict retried (%s): %s", where, error)


def conflict_counts() -> dict[str, int]:
    """Conflict retries so far in this process, by where they were caught."""
    return {label: n for (name, label), n in snapshot().items() if name == CONFLICT_RETRIES}


def conflicts_by_class() -> dict[str, int]:
    """Conflict retries so far in this process, by the class of the object in conflict."""
    return {label: n for (name, label), n in snapshot().items() if name == CONFLICTS_ON}


def snapshot() -> dict[tuple[str, str], int]:
    """A copy of every counter: ``{(name, label): count}``."""
    with _lock:
        return dict(_counts)


def reset() -> None:
    """Forget every count (tests)."""
    with _lock:
        _counts.clear()
