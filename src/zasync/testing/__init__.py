"""Helpers for testing code that uses zasync, with real databases and real threads.

The clock (:func:`set_now`, :func:`advance`, :func:`reset_now`) is the one
every part of zasync reads.  The ``wait_for_*`` helpers sync the calling
thread's transaction and check a condition until it holds or a timeout
passes; they never sleep longer than needed.  :func:`running_dispatcher`
starts a dispatcher for a ``with`` block.  The pytest fixtures live in
:mod:`zasync.pytest_plugin`, which pytest loads automatically.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import transaction

from zasync.clock import advance, reset_now, set_now
from zasync.interfaces import ACTIVE, CALLBACKS, COMPLETED, PENDING
from zasync.runtime import dispatcher as dispatcher_module
from zasync.runtime.dispatcher import AgentSpec, Dispatcher

__all__ = [
    "advance",
    "reset_now",
    "running_dispatcher",
    "set_now",
    "wait_for",
    "wait_for_annotation",
    "wait_for_deactivation",
    "wait_for_pending",
    "wait_for_poll",
    "wait_for_result",
    "wait_for_start",
]

T = TypeVar("T")
#: Seconds the ``wait_for*`` helpers wait before failing.  Generous on purpose: a wait
#: ends as soon as its condition holds, and a loaded CI machine is slow.
DEFAULT_TIMEOUT = 120.0


def wait_for(
    condition: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT,
    message: str = "condition never held",
    sync: Callable[[], Any] | None = transaction.begin,
) -> T:
    """Call ``condition()`` (after syncing) until it returns something true; return it.

    Raises AssertionError with ``message`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        if sync is not None:
            sync()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def wait_for_result(job: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Wait until ``job`` is COMPLETED and return its result."""
    wait_for(lambda: job.status == COMPLETED, timeout, "job never completed")
    return job.result


def wait_for_start(job: Any, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Wait until a worker has claimed ``job`` to run it (ACTIVE or later)."""
    wait_for(lambda: job.status in (ACTIVE, CALLBACKS, COMPLETED), timeout, "job never started")


def wait_for_pending(job: Any, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Wait until ``job`` is back in a queue."""
    wait_for(lambda: job.status == PENDING, timeout, "job never became pending")


def wait_for_annotation(job: Any, name: str, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Wait until ``job.annotations`` has ``name``; return the value."""
    missing = object()
    value = wait_for(
        lambda: job.get_annotation(name, missing) is not missing,
        timeout,
        "annotation never found",
    )
    assert value
    return job.get_annotation(name)


def wait_for_deactivation(dispatcher: Dispatcher, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Wait until ``dispatcher.activated`` is False."""
    wait_for(
        lambda: dispatcher.activated is False, timeout, "dispatcher never deactivated", sync=None
    )


def wait_for_poll(
    dispatcher: Dispatcher, count: int | None = None, timeout: float = DEFAULT_TIMEOUT
) -> Any:
    """Wait for more than ``count`` polls (default: as many as now); return the newest."""
    baseline = dispatcher.records.poll_count() if count is None else count
    wait_for(lambda: dispatcher.records.poll_count() > baseline, timeout, "no poll!", sync=None)
    return dispatcher.records.latest_poll()


@contextlib.contextmanager
def running_dispatcher(
    db: Any,
    *,
    threads: int = 3,
    prefetch: int = 0,
    agents: Iterable[AgentSpec] | None = None,
    poll_interval: float = 0.5,
    grace: float = 10.0,
    uuid_: uuid.UUID | None = None,
) -> Iterator[Dispatcher]:
    """Run a dispatcher on ``db`` for the ``with`` block, then stop it gracefully."""
    specs = (
        tuple(agents) if agents is not None else (AgentSpec(threads=threads, prefetch=prefetch),)
    )
    dispatcher = Dispatcher(
        db, uuid=uuid_ or uuid.uuid4(), poll_interval=poll_interval, agents=specs
    )
    dispatcher.activate()
    try:
        wait_for_poll(dispatcher, 0)
        yield dispatcher
    finally:
        if dispatcher.activated:
            dispatcher.stop(grace)
        with contextlib.suppress(KeyError):
            dispatcher_module.pop(dispatcher.UUID)
