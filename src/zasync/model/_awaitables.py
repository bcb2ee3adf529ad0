"""Running awaitables that jobs return, and committing their results.

A job whose callable is ``async def`` (or returns any awaitable) stays ACTIVE
while the awaitable runs on an asyncio loop.  When it resolves, the result is
delivered to the job through a fresh connection, committed with retries.  The
awaitable itself runs without a database connection: it should compute,
fetch or wait, and return picklable data.

By default a background thread runs one shared loop; the dispatcher installs
its own loop with :func:`set_runner`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from zasync.interfaces import ZasyncError
from zasync.model.failure import Failure
from zasync.model.tx import fresh_connection


class _Raised(Exception):
    """Carries a ``BaseException`` an awaitable raised, which asyncio would not keep.

    asyncio re-raises ``SystemExit`` and ``KeyboardInterrupt`` out of the
    loop, which would end the loop's thread and every awaitable job on it.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


async def _await(awaitable: Awaitable[Any]) -> Any:
    try:
        return await awaitable
    except Exception:
        raise
    except BaseException as error:  # the job's outcome, like any other error
        raise _Raised(error) from None


class AwaitableRunner:
    """An asyncio loop in a daemon thread, plus threads that commit outcomes."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        thread_initializer: Callable[[], None] | None = None,
    ) -> None:
        self._own_loop = loop is None
        self.loop = loop or asyncio.new_event_loop()
        self.committers = concurrent.futures.ThreadPoolExecutor(
            max_workers=2,
            thread_name_prefix="zasync-await-commit",
            initializer=thread_initializer,
        )
        self._thread: threading.Thread | None = None
        if self._own_loop:
            self._thread = threading.Thread(
                target=self.loop.run_forever, name="zasync-await-loop", daemon=True
            )
            self._thread.start()

    def run(self, awaitable: Awaitable[Any]) -> concurrent.futures.Future[Any]:
        """Schedule ``awaitable`` on the loop; return a thread-safe future of its outcome."""
        return asyncio.run_coroutine_threadsafe(_await(awaitable), self.loop)

    def close(self) -> None:
        """Stop the loop (if this runner owns it) and the committing threads."""
        self.committers.shutdown(wait=True)
        if self._own_loop and self._thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()


_lock = threading.Lock()
_runner: AwaitableRunner | None = None


def get_runner() -> AwaitableRunner:
    """The runner in use, starting the default one on first need."""
    global _runner
    with _lock:
        if _runner is None:
            _runner = AwaitableRunner()
        return _runner


def set_runner(runner: AwaitableRunner | None) -> AwaitableRunner | None:
    """Install ``runner`` (None: the default, started on next need); return the previous one."""
    global _runner
    with _lock:
        previous, _runner = _runner, runner
        return previous


def submit(job: Any, awaitable: Awaitable[Any]) -> concurrent.futures.Future[Any]:
    """Run ``awaitable`` for ``job``; the returned future resolves once the outcome is committed."""
    jar = job._p_jar
    if jar is None:
        raise ZasyncError(f"{job!r} must be stored before it can wait for an awaitable")
    db, oid = jar.db(), job._p_oid
    runner = get_runner()
    committed: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def deliver(outcome_future: concurrent.futures.Future[Any]) -> None:
        try:
            outcome = outcome_future.result()
        except _Raised as raised:
            outcome = Failure(raised.error)
        except BaseException as error:  # the awaitable's failure is the job's result
            outcome = Failure(error)
        try:
            _deliver(db, oid, outcome)
        except BaseException as error:
            committed.set_exception(error)
        else:
            committed.set_result(outcome)

    runner.run(awaitable).add_done_callback(lambda f: runner.committers.submit(deliver, f))
    return committed


def _deliver(db: Any, oid: bytes, outcome: Any) -> None:
    # The job's own callback commits (and retries); the connection only carries it.
    with fresh_connection(db) as (conn, tm):
        tm.begin()
        conn.get(oid)._callback(outcome)
