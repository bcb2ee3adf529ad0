"""Checked by mypy in tests/unit/test_api.py, which expects exactly the errors marked here."""

from __future__ import annotations

import zasync
from zasync import Job


def answer() -> str:
    return "42"


def show(queue: zasync.Queue) -> None:
    number: Job[int] = queue.put(answer)  # error: a Job[str] is no Job[int]
    text: str = Job(answer).result  # error: the result may be a Failure or None
    del number, text


@zasync.task
def double(value: int) -> int:
    return value * 2


def show_tasks(queue: zasync.Queue) -> None:
    double.put(queue, "not a number")  # error: the task's arguments are checked
