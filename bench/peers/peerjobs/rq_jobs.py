"""RQ's benchmark jobs: plain functions (RQ imports them by dotted name)."""

from __future__ import annotations

from peerjobs.common import record_drain, record_sample


def drain() -> None:
    """A drain job."""
    record_drain()


def sample(i: int) -> None:
    """A latency job for sample ``i``."""
    record_sample(i)
