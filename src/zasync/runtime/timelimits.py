"""How a worker stops a job that runs past its time limit (see :mod:`zasync.model.timelimit`).

zasync runs jobs in threads, which Python cannot kill.  So a job past its
limit is *failed first and stopped second*:

1. A watcher thread per dispatcher sleeps until the nearest deadline of the
   jobs its threads run under a limit.
2. At a deadline, a short-lived thread fails the job in a connection and
   transaction of its own (:func:`~zasync.model.timelimit.time_out`).  That
   commit changes the job's record, as does the job's own result commit, so
   whichever comes second conflicts: what the job changed is never stored
   once it was failed, and a job that committed its result first is left
   alone.  A job whose result commit is under way, or that has not started
   its code yet, is looked at again a moment later.
3. Only then is the job's thread told.  Its transaction manager dooms every
   transaction from then on (a commit the job's code tries fails, whichever
   way it is called); :class:`~zasync.errors.TimeLimitError` is raised in the
   job's code, between two bytecodes (``PyThreadState_SetAsyncExc``), but
   never inside a commit or an abort (it waits for their end), and called
   off after :data:`DELIVERY_WAIT` if the thread is inside a C call (a
   waiting interruption slows every thread); and the thread is
   *abandoned*: its pool counts it out and starts another at once, so the
   agent's slot and its thread are free for other jobs.
4. The job's callbacks run, in the short-lived thread; the job stays the
   pool's until they are done, and a graceful stop waits for them.

The trade-offs of threads over a child process per job: no fork, no
pickling of arguments, jobs share the worker's connection cache and start in
microseconds; but the exception cannot interrupt a call into C (a long
``time.sleep``, a blocking socket read, a C extension's loop): such a job
is failed and its slot freed on time all the same, but its thread, with its
database connection, lives on until the call returns (then it leaves), or
until the process ends.  Jobs that may block in C for ever should set a
timeout on what they call as well.  A job that catches the exception and
goes on is still failed, and cannot commit anything.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import transaction
from transaction._transaction import Transaction

from zasync.errors import TimeLimitError
from zasync.model import _context
from zasync.model.timelimit import describe_limit

events_log = logging.getLogger("zasync.events")
#: Seconds before a run that could not be stopped at its deadline is looked at again.
RECHECK = 0.25


class TimeLimitInterrupt(TimeLimitError):
    """Raised inside a job's code, between two bytecodes, when its time limit passed."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*(args or ("the job ran longer than its time limit",)))


#: Seconds a thread gets to take the interruption before it is called off (it is in C).
DELIVERY_WAIT = 0.5


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """Run the block without this thread's tracer and profiler (coverage, a debugger).

    On CPython 3.11, while an interruption waits for a thread blocked in C,
    every *traced* thread that calls a function spins where it is: the
    thread that sent it must not be one, or it could never call it off.
    """
    tracer, profiler = sys.gettrace(), sys.getprofile()
    sys.settrace(None)
    sys.setprofile(None)
    try:
        yield
    finally:
        sys.settrace(tracer)
        sys.setprofile(profiler)


def _raise_in_thread(ident: int, exception: type[BaseException] | None) -> None:
    """Make ``exception`` raised in thread ``ident`` at its next bytecode (None: call it off)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), None if exception is None else ctypes.py_object(exception)
    )


class _Settle(Exception):
    """Raised in the calling thread by :func:`_settle_signal`, and caught there."""


def _settle_signal() -> None:
    """Clear the interpreter's pending-interruption signal, from the calling thread.

    CPython 3.11 keeps one such signal for the whole interpreter, set while
    an asynchronous exception waits in any thread, and clears it only when a
    thread takes one.  Calling one off (NULL) leaves it set for good: every
    thread then checks for it at every step (under a tracer such as
    coverage's, they all but stop).  Taking an exception of our own, here,
    clears it.
    """
    try:
        _raise_in_thread(threading.get_ident(), _Settle)
        for _ in range(100_000):
            pass
    except _Settle:
        pass


def _let_it_go_off() -> None:
    """Run a few bytecodes so that an interruption still pending in this thread goes off here."""
    try:
        for _ in range(100_000):
            pass
    except TimeLimitInterrupt:
        pass


class GuardedTransaction(Transaction):  # type: ignore[misc]
    """A worker thread's transaction: its commit and abort are never cut in the middle.

    The time limit's exception is raised between two bytecodes of the job's
    code; inside a commit (a two-phase commit, a storage writing its index)
    that would leave the connection or the storage half done.  A commit or
    abort is a critical section: the exception waits until it ends.
    """

    def commit(self) -> Any:
        with _context.critical():
            return super().commit()

    def abort(self) -> Any:
        with _context.critical():
            return super().abort()


class RefusingTransactionManager(transaction.TransactionManager):  # type: ignore[misc]
    """A worker thread's transaction manager: once told to refuse, it dooms every transaction.

    Installed as the thread's ``transaction.manager``, so a doomed
    transaction is what ``transaction.commit()``, ``transaction.get()`` and
    the job's own connection all get: any commit raises DoomedTransaction.
    Its transactions are :class:`GuardedTransaction`.
    """

    refusing = False

    def get(self) -> Any:
        return self._checked(super().get())

    def begin(self) -> Any:
        # Beginning syncs the connections (applies invalidations): not to be cut either.
        with _context.critical():
            return self._checked(super().begin())

    def _checked(self, txn: Any) -> Any:
        if type(txn) is Transaction:
            # The same object with guarded commit and abort (no state of its own to add).
            txn.__class__ = GuardedTransaction
        if self.refusing:
            _doom(txn)
        return txn


def _doom(txn: Any) -> None:
    if not txn.isDoomed():
        # One already committing, or failed, cannot be doomed (nor commit again).
        with contextlib.suppress(ValueError):
            txn.doom()


def install_refusing_manager() -> RefusingTransactionManager:
    """Give this thread a :class:`RefusingTransactionManager`; return it (before any connection)."""
    manager = RefusingTransactionManager()
    transaction.manager.manager = manager
    return manager


class StoppingPool(Protocol):
    """What a run needs of the pool of its thread."""

    def stop_timed_out(self, run: TimedRun) -> bool | None:
        """Fail the job of ``run``, then stop and abandon its thread (None: ask again soon)."""


class TimedRun:
    """One job run under a time limit in a worker thread: the guard its code runs through."""

    def __init__(
        self,
        pool: StoppingPool,
        job: Any,
        item: tuple[bytes, str],
        limit: float,
        manager: RefusingTransactionManager,
    ) -> None:
        self.pool = pool
        self.job = job
        self.item = item
        self.limit = limit
        self.started_us: int | None = job._active_start
        self.thread = threading.current_thread()
        self.manager = manager
        self.deadline = time.monotonic() + limit
        self._lock = threading.Lock()
        self._inside = False  # the job's code is running
        self._interrupted = False
        self._critical = 0  # commits and aborts under way in the job's thread
        self._held_back = False  # an interruption waits for the end of one
        self._over = False  # the thread is done with the job
        #: The job's outcome is being committed: not to be stopped (unless that fails).
        self.committing = False
        #: The job was failed for running too long; this thread is abandoned.
        self.expired = False

    def call(self, fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Run the job's code where :meth:`expire` can interrupt it."""
        with self._lock:
            if self.expired:
                raise TimeLimitError(describe_limit(self.limit))
            if self.started_us is None:  # started by this call's own commit (``job()``)
                self.started_us = self.job._active_start
            self.committing = False
            self._inside = True
        went_off = False
        try:
            return fn(*args, **kwargs)
        except TimeLimitInterrupt:
            went_off = True
            with self._lock:
                self._interrupted = False  # taken
            raise
        finally:
            with self._lock:
                self._inside = False
                self._held_back = False
                pending = self._interrupted and not went_off
            if pending:
                # Sent but perhaps not raised yet (or swallowed by the job's code): it
                # must not go off later, in zasync's own code.
                _let_it_go_off()
            if self.expired:
                raise TimeLimitError(describe_limit(self.limit))

    def result_commit_starts(self) -> None:
        """The job's outcome is being committed (see :attr:`committing`)."""
        with self._lock:
            self.committing = True

    def enter_critical(self) -> None:
        """A commit or abort begins in the job's thread."""
        with self._lock:
            self._critical += 1

    def leave_critical(self) -> None:
        """It ended: raise an interruption held back meanwhile."""
        with self._lock:
            self._critical -= 1
            deliver = self._critical == 0 and self._held_back and self._inside
            if deliver:
                self._held_back = False
        if deliver:
            raise TimeLimitInterrupt()

    @property
    def over(self) -> bool:
        """The thread is done with the job."""
        return self._over

    def expire(self, count_out: Callable[[], None]) -> bool:
        """The job was failed: refuse the thread's commits, interrupt its code, abandon it.

        ``count_out()`` takes the thread out of its pool; it is called here,
        under the run's lock, so that the thread, finishing at the same
        moment, counts itself out either entirely or not at all.  Returns
        False, doing nothing, if the thread was already done with the job.
        """
        with self._lock:
            if self.expired or self._over:
                return False
            self.expired = True
            self.manager.refusing = True
            count_out()
            if self._inside and self._critical:
                self._held_back = True  # raised when the commit or abort under way ends
            elif self._inside and self.thread.ident is not None:
                _raise_in_thread(self.thread.ident, TimeLimitInterrupt)
                self._interrupted = True
            return True

    def await_interruption(self, timeout: float = DELIVERY_WAIT) -> bool:
        """Give the thread ``timeout`` seconds to take the interruption; else call it off.

        A thread inside a C call takes it only when the call returns, and a
        waiting interruption slows every thread of the process: it is called
        off, and the job's code is stopped when it returns instead (it leaves
        the guard with TimeLimitError, and its commits are refused).  True if
        the interruption was taken (or none was sent).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not (self._interrupted and self._inside):
                    return True
            time.sleep(0.01)
        with self._lock:
            if not (self._interrupted and self._inside):
                return True
            _raise_in_thread(self.thread.ident or 0, None)
            self._interrupted = False
        _settle_signal()
        return False

    def finish(self) -> None:
        """The thread is done with the job (stopped or not): :meth:`expire` no longer acts."""
        with self._lock:
            self._over = True


class TimeLimits:
    """The deadlines of one dispatcher's time-limited runs, and the thread that keeps them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition()
        self._runs: set[TimedRun] = set()
        self._sleeping_until = math.inf
        self._thread: threading.Thread | None = None
        self._stopped = False

    def watch(self, run: TimedRun) -> None:
        """Keep ``run``'s deadline (starting the watcher thread on first use)."""
        with self._cond:
            self._runs.add(run)
            if self._thread is None:
                self._stopped = False
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            elif run.deadline < self._sleeping_until:
                self._cond.notify()

    def forget(self, run: TimedRun) -> None:
        """``run`` is over (its thread is done with it): its deadline no longer matters."""
        with self._cond:
            self._runs.discard(run)

    def stop(self) -> None:
        """Stop the watcher thread (runs still going are no longer watched)."""
        with self._cond:
            self._stopped = True
            self._runs.clear()
            self._cond.notify()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)

    def _loop(self) -> None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                due = [run for run in self._runs if run.deadline <= now]
                for run in due:
                    self._runs.discard(run)
                    try:
                        threading.Thread(
                            target=self._stop_run,
                            args=(run,),
                            name=f"zasync-time-limit-{int.from_bytes(run.item[0], 'big')}",
                            daemon=True,
                        ).start()
                    except RuntimeError:  # no thread to be had now: try again soon
                        events_log.warning("could not start a thread to stop a job; retrying")
                        run.deadline = now + RECHECK
                        self._runs.add(run)
                self._sleeping_until = min((r.deadline for r in self._runs), default=math.inf)
                wait = None if self._sleeping_until == math.inf else self._sleeping_until - now
                self._cond.wait(wait)
            self._sleeping_until = math.inf

    def _stop_run(self, run: TimedRun) -> None:
        try:
            if run.pool.stop_timed_out(run) is None:
                # Not stoppable just now (committing its outcome, not started yet):
                # look again soon, for as long as its thread runs it.
                self._watch_again(run, RECHECK)
        except Exception:
            if run.expired:  # stopped; what failed came after (logged below): not again
                events_log.critical(
                    "job %d was stopped at its time limit, but handling it afterwards failed",
                    int.from_bytes(run.item[0], "big"),
                    exc_info=True,
                )
                return
            events_log.critical(
                "could not stop job %d past its time limit; trying again in 5 s",
                int.from_bytes(run.item[0], "big"),
                exc_info=True,
            )
            self._watch_again(run, 5.0)

    def _watch_again(self, run: TimedRun, delay: float) -> None:
        with self._cond:
            if not self._stopped and not run.over:
                run.deadline = time.monotonic() + delay
                self._runs.add(run)
                self._cond.notify()
