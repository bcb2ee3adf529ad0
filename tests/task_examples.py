"""Tasks for the tests: module-level, so that workers and unpickling find them by name."""

from __future__ import annotations

import datetime

import zasync


@zasync.task
def double(value: int) -> int:
    """Twice the value."""
    return value * 2


@zasync.task(
    queue="reports",
    retry="never",
    quota_names=["one"],
    begin_by=datetime.timedelta(minutes=5),
    failure_log_level=30,
)
def report(name: str, *, pages: int = 1) -> str:
    """A report's title."""
    return f"{name} ({pages} pages)"
