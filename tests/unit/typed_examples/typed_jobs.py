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
