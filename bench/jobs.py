"""Job functions for the benchmarks (importable by worker processes)."""

from __future__ import annotations

import time


def noop() -> None:
    """Does nothing: measures zasync's own cost per job."""


def started_at() -> float:
    """Returns the wall-clock time at which the job started."""
    return time.time()
