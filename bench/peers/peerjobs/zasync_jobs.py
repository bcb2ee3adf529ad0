"""zasync's benchmark jobs: plain functions (a zasync job calls any importable callable)."""

from __future__ import annotations

from peerjobs.common import record_drain, record_sample


def drain() -> None:
    """A drain job."""
    record_drain()


def sample(i: int) -> None:
    """A latency job for sample ``i``."""
    record_sample(i)
