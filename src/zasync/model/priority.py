"""Priorities: which due jobs a claim takes first.

A job's priority is a whole number from -100 to 100 (default 0); among the
jobs of a queue that are due, a claim takes those of the highest priority
first, and equal priorities keep their order (put order, put-back jobs
first).  The order is strict: while jobs of a higher priority are due, no job
of a lower one is claimed, so a steady flow of urgent jobs starves the rest.
A queue keeps the jobs of each priority other than 0 in lanes of their own
(``Queue._bands``), made by the first job of that priority, so a queue whose
jobs all have priority 0 pays nothing for them.
"""

from __future__ import annotations

from typing import Any, Final

from zasync.errors import InvalidValueError

MIN_PRIORITY: Final = -100
MAX_PRIORITY: Final = 100


def check_priority(priority: Any, what: str = "priority") -> None:
    """Refuse what is not None or a whole number from MIN_PRIORITY to MAX_PRIORITY."""
    if priority is None:
        return
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not MIN_PRIORITY <= priority <= MAX_PRIORITY
    ):
        raise InvalidValueError(
            f"{what} must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY}, "
            f"not {priority!r:.40}"
        )
