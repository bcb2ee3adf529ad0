"""Helpers for testing code that uses zasync, with real databases and real threads.

The clock (:func:`set_now`, :func:`advance`, :func:`reset_now`) is the one
every part of zasync reads.  The ``wait_for_*`` helpers sync the calling
thread's transaction and check a condition until it holds or a timeout
passes; they never sleep longer than needed.  :func:`running_dispatcher`
starts a dispatcher for a ``with`` block; :func:`run_until_idle` runs due jobs
without one, deterministically; :func:`count_commits` counts what a piece of
code costs in commits.  The pytest fixtures live in
:mod:`zasync.testing.pytest_plugin`, which pytest loads automatically.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import transaction
from transaction.interfaces import ISynchronizer
from zope.interface import implementer

from zasync.clock import advance, reset_now, set_now
from zasync.interfaces import ACTIVE, CALLBACKS, COMPLETED, PENDING
from zasync.model.agent import Agent
from zasync.model.failure import Failure
from zasync.model.queue import get_queue
from zasync.model.tx import fresh_connection
from zasync.runtime import dispatcher as dispatcher_module
from zasync.runtime.config import AgentSpec
from zasync.runtime.dispatcher import Dispatcher
from zasync.runtime.local import local

__all__ = [
    "CommitCounter",
    "advance",
    "count_commits",
    "reset_now",
    "run_until_idle",
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


def wait_for_result(
    job: Any, timeout: float = DEFAULT_TIMEOUT, *, raise_failure: bool = False
) -> Any:
    """Wait until ``job`` is COMPLETED and return its result.

    A failed job's result is a :class:`~zasync.Failure`; with ``raise_failure``
    its exception is raised here instead, so that the test shows the job's
    error and traceback rather than a comparison with a Failure.
    """
    wait_for(lambda: job.status == COMPLETED, timeout, "job never completed")
    result = job.result
    if raise_failure and isinstance(result, Failure):
        result.raiseException()
    return result


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


_idle_runner_uuids: dict[int, uuid.UUID] = {}


def run_until_idle(db: Any, queue_name: str = "", limit: int = 100, sync: bool = True) -> list[Any]:
    """Claim and call due jobs, one at a time, until none is due; return their results.

    A deterministic stand-in for a worker: no poll thread, no pool, no timing.
    It runs in a thread of its own with its own connection (as a worker's
    thread would), registered in the queue as a dispatcher with one agent, and
    calls at most ``limit`` jobs.  An exception escaping a job's call (not a
    failure, which becomes the job's result) is raised here.  With ``sync``
    the calling thread's transaction is restarted afterwards, so that it sees
    what the jobs committed (its uncommitted changes are lost: commit first).
    """
    results: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            run(db)
        except BaseException as error:  # raised again in the caller's thread
            errors.append(error)

    def run(db: Any) -> None:
        with fresh_connection(db) as (conn, tm):
            tm.begin()
            queue = get_queue(conn, queue_name)
            key = id(db)
            if key not in _idle_runner_uuids or _idle_runner_uuids[key] not in queue.dispatchers:
                _idle_runner_uuids[key] = uuid.uuid4()
                registered = queue.dispatchers.register(_idle_runner_uuids[key])
                registered["main"] = Agent(size=1000)
            runner = queue.dispatchers[_idle_runner_uuids[key]]
            runner.activate()
            tm.commit()
            try:
                agent = runner["main"]
                for _ in range(limit):
                    job = agent.claimJob()
                    if job is None:
                        break
                    tm.commit()
                    local.job = job  # as a worker thread does: zasync.local works in the job
                    try:
                        results.append(job())
                    finally:
                        local.job = None
            finally:
                # An active record would count as a worker sharing the queue's
                # lanes with the next real dispatcher, which would then wait on it.
                tm.abort()
                tm.begin()
                if runner.activated:
                    runner.deactivate()
                tm.commit()

    thread = threading.Thread(target=work, name="zasync-run-until-idle")
    thread.start()
    thread.join(DEFAULT_TIMEOUT)
    if thread.is_alive():
        raise AssertionError(f"jobs still running after {DEFAULT_TIMEOUT} seconds")
    if errors:
        raise errors[0]
    if sync:
        transaction.begin()
    return results


@implementer(ISynchronizer)
class CommitCounter:
    """Counts the commits of one transaction manager that wrote to a database.

    Empty transactions (nothing joined them) are not counted: they cost nothing.
    """

    def __init__(self) -> None:
        self.commits = 0
        self._writes = False

    def beforeCompletion(self, txn: Any) -> None:
        """Note whether the finishing transaction has anything to write."""
        # transaction has no public "did anything join" question; its resource list is it.
        self._writes = bool(txn._resources)

    def afterCompletion(self, txn: Any) -> None:
        """Count the transaction if it committed and wrote."""
        if self._writes and txn.status == transaction._transaction.Status.COMMITTED:
            self.commits += 1

    def newTransaction(self, txn: Any) -> None:
        """Nothing to do when a transaction begins."""


@contextlib.contextmanager
def count_commits(manager: Any = None) -> Iterator[CommitCounter]:
    """Count the commits made through ``manager`` (default: this thread's) in the block.

    Example: ``with count_commits() as counter: job()`` then
    ``assert counter.commits == 2``.  Commits of worker threads go through
    their own managers and are not counted.
    """
    tm = transaction.manager if manager is None else manager
    counter = CommitCounter()
    tm.registerSynch(counter)
    try:
        yield counter
    finally:
        tm.unregisterSynch(counter)
