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
    timeout=datetime.timedelta(minutes=2),
)
def report(name: str, *, pages: int = 1) -> str:
    """A report's title."""
    return f"{name} ({pages} pages)"


@zasync.task(unique_key="sync-{0}", unique_until="finished")
def sync_account(account: str, *, full: bool = False) -> str:
    """Synchronise one account: at most one job per account, pending or running."""
    return f"{account} synced{' in full' if full else ''}"


@zasync.task(unique_key="sync-{account}")
def sync_by_name(account: str) -> str:
    """A key template that names an argument the caller may pass by position."""
    return account
