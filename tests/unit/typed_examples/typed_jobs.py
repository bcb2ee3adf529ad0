"""Checked by mypy in tests/unit/test_api.py: what a type checker sees of jobs and queues."""

from __future__ import annotations

import datetime
from typing import assert_type

import zasync
from zasync import Failure, Job


def add(a: int, b: int) -> int:
    return a + b


def answer() -> str:
    return "42"


async def fetch() -> bytes:
    return b""


def show(queue: zasync.Queue) -> None:
    job = Job(add, 1, 2)
    assert_type(job, Job[int])
    assert_type(job.result, int | Failure | None)
    assert_type(queue.put(job), Job[int])
    assert_type(queue.put(answer), Job[str])
    assert_type(queue.put(fetch), Job[bytes])
    later = queue.put(answer, begin_after=datetime.timedelta(minutes=5))
    assert_type(later.id, str)
    assert_type(Job(fetch).result, bytes | Failure | None)


@zasync.task(queue="reports")
def title(name: str, pages: int = 1) -> str:
    return f"{name} ({pages})"


def show_tasks(queue: zasync.Queue) -> None:
    assert_type(title("x"), str)
    assert_type(title.put(queue, "x", pages=2), Job[str])
    assert_type(title.with_options(queue="other").job("y"), Job[str])
