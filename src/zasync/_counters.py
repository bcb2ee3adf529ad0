"""Process-wide counters that the metrics endpoint exports (no dependency, no I/O).

Core modules call :func:`add` where something worth counting happens (a
conflict retried); :mod:`zasync.metrics` reads :func:`snapshot` at scrape
time.  Counting is a dictionary update under a lock.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_counts: dict[tuple[str, str], int] = {}


def add(name: str, label: str, amount: int = 1) -> None:
    """Add ``amount`` to the counter ``name`` for ``label``."""
    with _lock:
        _counts[(name, label)] = _counts.get((name, label), 0) + amount


def snapshot() -> dict[tuple[str, str], int]:
    """A copy of every counter: ``{(name, label): count}``."""
    with _lock:
        return dict(_counts)
