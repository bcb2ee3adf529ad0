"""An agent's thread pool: threads that each keep a connection and run claimed jobs.

Work items are ``(oid, database name)`` pairs of jobs the dispatcher claimed.
Each thread loads the job in its own connection (waiting out disconnects),
checks that the job is still this dispatcher's to run, and runs it; the job
commits for itself.  What escapes the job is handled so that no job is left
stuck in the agent.
"""

from __future__ import annotations

import datetime
import logging
import queue as queue_module
import threading
import time
import uuid
from typing import Any, Protocol

import transaction
import ZODB
from ZODB.Connection import Connection

from zasync import clock
from zasync._logtext import short_repr
from zasync.interfaces import (
    ACTIVE,
    ASSIGNED,
    CALLBACKS,
    COMPLETED,
    FINISHED,
    NEW,
    PENDING,
    BadStatusError,
    IAgent,
    IJob,
)
from zasync.model import _context
from zasync.model.batch import batchable, run_batch
from zasync.model.cancellation import cancel_before_start
from zasync.model.job import Job
from zasync.model.quarantine import describe, unsound
from zasync.model.timelimit import RESCHEDULED, describe_limit, limit_for, time_out
from zasync.model.tx import (
    TRANSACTION_ERRORS,
    abort_quietly,
    backoff,
    disconnect_errors,
    never_fail,
    quiet_storage_load_failures,
    report_storage_failure,
    system_errors,
)
from zasync.runtime.local import local
from zasync.runtime.records import JobId, Records, describe_result
from zasync.runtime.timelimits import (
    RefusingTransactionManager,
    TimedRun,
    TimeLimits,
    install_refusing_manager,
    untraced,
)


class PoolOwner(Protocol):
    """What a pool needs of the dispatcher it serves (so the pool knows no Dispatcher)."""

    UUID: uuid.UUID
    db: ZODB.DB
    records: Records
    activated: datetime.datetime | bool | None
    time_limits: TimeLimits

    def wake(self) -> None:
        """Poll soon."""

    def job_done(self, pool: AgentThreadPool) -> None:
        """A thread of ``pool`` finished a job."""

    def thread_exited(self, pool: AgentThreadPool) -> None:
        """A thread of ``pool`` ended (replace it if the pool should still have it)."""

    def quarantine_later(self, oid: bytes, cause: str) -> None:
        """Quarantine the job ``oid`` from the poll thread."""


events_log = logging.getLogger("zasync.events")
#: How long (seconds) a job run here still counts as this pool's for the orphan check.
FINISHED_MEMORY = 60.0
#: How many finished jobs a pool remembers at most (the oldest are forgotten first).
FINISHED_KEPT = 10_000
trace_log = logging.getLogger("zasync.trace")

WorkItem = tuple[bytes, str]


class AgentThreadPool:
    """The threads that run one agent's jobs in this process."""

    def __init__(self, dispatcher: PoolOwner, queue_name: str, agent_name: str) -> None:
        self.dispatcher = dispatcher
        self.queue_name = queue_name
        self.agent_name = agent_name
        self.queue: queue_module.Queue[WorkItem | None] = queue_module.Queue()
        # The threads that count towards the size: started, and not leaving.
        self.threads: list[threading.Thread] = []
        self._size = 0
        # Exit requests (``None``) in ``queue`` that no thread has taken yet.
        self._wakeups = 0
        self._lock = threading.Lock()
        self.running = 0  # jobs being run right now
        # Jobs handed to this pool and not yet done with: waiting or running.
        self._owned: set[bytes] = set()
        # Jobs run here lately, by when they finished: the dispatcher's poll may
        # still see one as held and unfinished (its transaction began before the
        # job's result commit), and must not take it for an orphan.
        self._finished: dict[bytes, float] = {}
        self._idle = threading.Condition(self._lock)
        #: Threads that died (and were replaced), and errors of zasync's own
        #: bookkeeping while handling a job: both shown by the live view.
        self.deaths = 0
        self.errors = 0
        self._started = 0  # threads ever started here, to name them
        #: Jobs a thread runs in one transaction (see :mod:`zasync.model.batch`).
        self.batch = 1
        #: The agent's default time limit in seconds (see :mod:`zasync.model.timelimit`).
        self.timeout: float | None = None
        #: Jobs stopped here at their time limit.
        self.timed_out = 0
        # Threads abandoned to a job stopped at its time limit (see
        # zasync.runtime.timelimits), until they leave: thread -> that job's oid.
        self._abandoned: dict[threading.Thread, set[bytes]] = {}
        # Jobs stopped at their time limit whose failure and callbacks are still
        # being handled (they are still this pool's: held, and waited for by a stop).
        self._stopping = 0
        self._stopping_oids: set[bytes] = set()

    def getSize(self) -> int:
        """The declared number of threads (alias: ``get_size``)."""
        return self._size

    get_size = getSize

    def thread_count(self) -> int:
        """The threads alive and counted towards the size (not those leaving)."""
        with self._lock:
            return sum(1 for t in self.threads if t.is_alive())

    def setSize(self, size: int | None = None) -> int:
        """Start or stop threads to reach ``size``; return the change in declared size.

        Without ``size``, only replaces threads that died.  Shrinking asks
        surplus threads to leave: an idle one when it takes an exit request
        from the queue, a busy one when it finishes its job.  Requests are
        counted, so a shrink followed by a growth, while the threads are busy,
        neither starts too few threads nor lets the stale requests stop more
        threads than the size allows (see :meth:`_leave_if_surplus`).
        """
        with self._lock:
            old = self._size
            if size is not None:
                self._size = size
            # A thread replacing itself (on its way out) no longer counts.
            me = threading.current_thread()
            self.threads = [t for t in self.threads if t.is_alive() and t is not me]
            while len(self.threads) < self._size:
                thread = threading.Thread(
                    target=self._main,
                    name=f"zasync-{self.queue_name or 'default'}-{self.agent_name}-{self._started}",
                    daemon=True,
                )
                self._started += 1
                self.threads.append(thread)
                thread.start()
            for _ in range(len(self.threads) - self._size - self._wakeups):
                self._wakeups += 1
                self.queue.put(None)
            return self._size - old

    set_size = setSize

    def _leave_if_surplus(self, woken: bool = False) -> bool:
        """Between jobs: True if this thread must stop (the pool has more than its size).

        A leaving thread stops counting at once.  ``woken``: the thread has
        just taken an exit request from the queue.
        """
        me = threading.current_thread()
        with self._lock:
            if woken:
                self._wakeups -= 1
            if me in self.threads and len(self.threads) <= self._size:
                return False
            if me in self.threads:
                self.threads.remove(me)
            return True

    def assign(self, item: WorkItem) -> None:
        """Queue a claimed job for the threads."""
        with self._lock:
            self._owned.add(item[0])
            self._finished.pop(item[0], None)
        self.queue.put(item)

    def owns(self, oid: bytes) -> bool:
        """True if the job is waiting here, being run here, or was run here lately."""
        with self._lock:
            if oid in self._owned or oid in self._stopping_oids:
                return True
            finished = self._finished.get(oid)
            return finished is not None and time.monotonic() - finished < FINISHED_MEMORY

    def holds_anything(self) -> bool:
        """Jobs waiting, running, or finished here within the orphan check's memory."""
        with self._lock:
            if self._owned or self._stopping or self._stopping_oids:
                return True
            now = time.monotonic()
            return any(now - t < FINISHED_MEMORY for t in self._finished.values())

    def _remember_finished(self, oid: bytes) -> None:
        """Note a job done here (called with the lock held); forget the oldest beyond a bound."""
        self._finished.pop(oid, None)  # re-inserted last: the dict stays in finishing order
        self._finished[oid] = time.monotonic()
        while len(self._finished) > FINISHED_KEPT:
            del self._finished[next(iter(self._finished))]

    def abandoned_threads(self) -> int:
        """Threads abandoned to a job stopped at its time limit that have not come back yet."""
        with self._lock:
            return sum(1 for t in self._abandoned if t.is_alive())

    def backlog(self) -> int:
        """Claimed jobs waiting for a thread."""
        return max(0, self.queue.qsize() - self._wakeups)

    def take_backlog(self) -> list[WorkItem]:
        """Remove and return every waiting job (for a graceful stop)."""
        items: list[WorkItem] = []
        exits = 0
        while True:
            try:
                item = self.queue.get_nowait()
            except queue_module.Empty:
                for _ in range(exits):  # keep exit requests for the threads
                    self.queue.put(None)
                return items
            if item is None:
                exits += 1
                continue
            with self._lock:
                self._owned.discard(item[0])
            items.append(item)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job is running here; True if that happened in time."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.running or self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True

    # -- the threads ---------------------------------------------------------------

    def _main(self) -> None:
        _context.set_filing_deferred(True)
        # Only the job this thread was given is checked; its callbacks are not in an agent.
        _context.set_ownership_check(lambda job: job is not local.job or self._may_go_on(job))
        local.dispatcher = self.dispatcher
        install_refusing_manager()  # before the connection: it joins this manager's transactions
        me = threading.current_thread()
        quiet_storage_load_failures()  # a job's reload waits an outage out and reports it
        conn: Any = None
        try:
            conn = self._open()
            while True:
                item = self.queue.get()
                if item is None:
                    if self._leave_if_surplus(woken=True):
                        return
                    continue
                items = [item, *self._more_for_batch()]
                handed_back: list[WorkItem] = []  # filled by _run_batch as it hands them
                with self._lock:
                    self.running += len(items)
                try:
                    if len(items) == 1:
                        self._run(conn, item)
                    else:
                        self._run_batch(conn, items, handed_back)
                except BaseException:
                    # _run turns whatever a job raises into its outcome; this is
                    # zasync's own bookkeeping failing.  The job stays held in
                    # the database, and the dispatcher's orphan check hands it
                    # back once this pool no longer remembers it.
                    self.errors += 1
                    events_log.critical(
                        "worker thread %s: unexpected error handling job(s) %s; "
                        "the thread goes on, and the job is recovered as orphaned",
                        threading.current_thread().name,
                        ", ".join(str(_job_id(i)[0]) for i in items),
                        exc_info=True,
                    )
                    conn = self._reopen(conn)
                finally:
                    with self._idle:
                        # Counted out already: a job stopped at its limit, jobs handed back.
                        stopped = self._abandoned.get(me, set())
                        for done in items:
                            if done[0] not in stopped and done not in handed_back:
                                self.running -= 1
                                self._owned.discard(done[0])
                                self._remember_finished(done[0])
                        self._idle.notify_all()
                    if conn.opened is None and not stopped:  # the job closed it
                        conn = self._reopen(conn)
                    self.dispatcher.job_done(self)
                if self._leave_if_surplus():
                    return
        except BaseException:
            self.deaths += 1
            events_log.critical(
                "worker thread %s died; it is replaced",
                threading.current_thread().name,
                exc_info=True,
            )
        finally:
            local.dispatcher = None
            local.job = None
            abort_quietly(transaction.manager)
            if conn is not None:
                self._close_quietly(conn)
            with self._lock:
                was_abandoned = self._abandoned.pop(me, None) is not None
            if was_abandoned:
                self.dispatcher.db.setPoolSize(max(1, self.dispatcher.db.getPoolSize() - 1))
            if self.dispatcher.activated:
                self.dispatcher.thread_exited(self)

    def _more_for_batch(self) -> list[WorkItem]:
        """Up to ``batch - 1`` more jobs already waiting (never waiting for more)."""
        more: list[WorkItem] = []
        while len(more) < self.batch - 1:
            try:
                item = self.queue.get_nowait()
            except queue_module.Empty:
                break
            if item is None:  # an exit request: leave it for the loop
                self.queue.put(None)
                break
            more.append(item)
        return more

    def _reopen(self, conn: Connection | None) -> Connection:
        """A fresh connection after an unexpected error: the old one may hold a broken state."""
        abort_quietly(transaction.manager)
        self._close_quietly(conn)
        return self._open()

    def _open(self, tm: transaction.TransactionManager | None = None) -> Connection:
        """A connection to the database, waiting out a storage that fails.

        Opening a connection reads the storage (RelStorage polls the
        database): with the server away, a thread that gave up here would die
        and its replacement would fail the same way, in a loop.
        """
        failures = 0
        while True:
            try:
                return self.dispatcher.db.open(transaction_manager=tm)
            except system_errors() as error:
                if not self.dispatcher.activated:
                    raise  # stopping: nothing left to wait for
                failures += 1
                report_storage_failure("opening a connection for a worker thread", error)
                clock.sleep(backoff(failures))

    @staticmethod
    def _close_quietly(conn: Connection | None) -> None:
        if conn is None:
            return
        try:
            conn.close()
        except Exception:  # a connection with a failed transaction still joined
            events_log.warning("could not close a worker connection", exc_info=True)

    def _load(self, conn: Connection, oid: bytes, dbname: str) -> Job[Any]:
        """Load the job, retrying forever on conflicts and disconnects."""
        conflicts = disconnects = 0
        while True:
            try:
                transaction.begin()
                jar = (
                    conn if dbname in ("", conn.db().database_name) else conn.get_connection(dbname)
                )
                job: Job[Any] = jar.get(oid)
                job._p_activate()
                return job
            except TRANSACTION_ERRORS:
                conflicts += 1
                if conflicts == 1 or conflicts % 5 == 0:
                    events_log.warning(
                        "%d transaction error(s) while trying to get job %d in db %s",
                        conflicts,
                        int.from_bytes(oid, "big"),
                        dbname,
                        exc_info=True,
                    )
            except disconnect_errors():
                disconnects += 1
                delay = backoff(disconnects)
                events_log.info(
                    "database disconnected while trying to get job %d in db %s; retrying in %d s",
                    int.from_bytes(oid, "big"),
                    dbname,
                    delay,
                )
                clock.sleep(delay)

    def _run(self, conn: Connection, item: WorkItem) -> None:
        job = self._prepare(conn, item)
        if job is not None:
            self._execute(job, item)

    def _run_batch(
        self, conn: Connection, items: list[WorkItem], handed_back: list[WorkItem]
    ) -> None:
        """Run several jobs in one transaction (see :mod:`zasync.model.batch`).

        Jobs with a time limit run alone, after the others, one per batch: the
        others go back to the pool's queue (listed in ``handed_back``), so that
        a job stopped at its limit, whose thread may never come back, holds none.
        """
        ready: list[Job[Any]] = []
        items_of: dict[int, WorkItem] = {}
        limited: list[tuple[Job[Any], WorkItem]] = []
        for item in items:
            job = self._prepare(conn, item)
            if job is None:
                continue
            if limit_for(job, self.timeout) is not None:
                limited.append((job, item))
            elif job.stored_status == ACTIVE and batchable(job):
                ready.append(job)
                items_of[id(job)] = item
            else:  # it needs a commit that starts it, or commits by itself: alone
                self._execute(job, item)
        for _, item in limited[1:]:
            with self._lock:
                handed_back.append(item)
                self.running -= 1  # counted again by the thread that takes it
            self.queue.put(item)
        if ready:
            self._run_ready(conn, ready, items_of)
        if limited:
            self._execute(*limited[0])

    def _run_ready(
        self, conn: Connection, ready: list[Job[Any]], items_of: dict[int, WorkItem]
    ) -> None:
        """Run batchable jobs in one transaction, and record what became of each."""

        def starting(job: Job[Any]) -> None:
            local.job = job
            local._last_progress = 0.0
            trace_log.info("starting in thread %d: %r", threading.get_ident(), job)

        def finished(job: Job[Any]) -> None:
            local.job = None

        transaction.begin()
        try:
            run = run_batch(ready, transaction.manager, starting, finished)
        except BaseException:
            abort_quietly(transaction.manager)
            raise
        finally:
            local.job = None
        abort_quietly(transaction.manager)
        for job, result in run.results:
            self._record_outcome(job, _job_id(items_of[id(job)]), result)
        for job in run.again:  # nothing of their batch was stored: from the start, alone
            self._run(conn, items_of[id(job)])

    def _prepare(self, conn: Connection, item: WorkItem) -> Job[Any] | None:
        """Load a claimed job and check it may run here; None if it must not (handled)."""
        oid, dbname = item
        job_id = _job_id(item)
        records = self.dispatcher.records
        thread_id = threading.get_ident()
        records.update_job(job_id, started=clock.utcnow(), thread=thread_id)
        try:
            job = self._load(conn, oid, dbname)
            bad = unsound(job)
            problem = None if bad is None else bad[1]
        except Exception as error:  # _load waits out conflicts and disconnects
            problem = f"its record cannot be loaded: {describe(error)}"
        if problem is not None:
            # Running or even settling it would fail; the dispatcher's next
            # poll quarantines it (one ERROR line there).
            abort_quietly(transaction.manager)
            trace_log.info("not running job %d: %s", job_id[0], problem)
            records.update_job(job_id, result=problem, failed=True, completed=clock.utcnow())
            self.dispatcher.wake()
            return None
        if not self._still_ours(job):
            if self._in_our_agent(job) and job.stored_status in FINISHED:
                events_log.error("job already completed? %r", job)
                self._settle(job)
            else:
                trace_log.info("not running %r: it was reassigned", job)
            records.update_job(job_id, reassigned=True, completed=clock.utcnow())
            abort_quietly(transaction.manager)
            return None
        if cancel_before_start(job):  # asked to stop while it waited for a thread
            records.update_job(
                job_id, result=short_repr(job.result), failed=True, completed=clock.utcnow()
            )
            return None
        return job

    def _execute(self, job: Job[Any], item: WorkItem) -> None:
        """Run a prepared job alone, in the usual way, and record what became of it."""
        thread_id = threading.get_ident()
        trace_log.info("starting in thread %d: %r", thread_id, job)
        local.job = job
        local._last_progress = 0.0
        run = self._watch(job, item)
        try:
            result = job.run_claimed() if job.stored_status == ACTIVE else job()
        except BadStatusError:
            abort_quietly(transaction.manager)
            events_log.error("job already completed? %r", job, exc_info=True)
            self._settle(job)
            result = job.result
        except BaseException:
            abort_quietly(transaction.manager)
            if run is not None and run.expired:
                # Stopped at its time limit: its thread's commits are refused, and the
                # thread that stopped it handles it.
                trace_log.info("stopped %r gave up in thread %d", job, thread_id, exc_info=True)
                return
            # Job code cannot get here (the job records what it raises); this
            # is an error of the job's bookkeeping.  Settle the job, go on.
            self.errors += 1
            events_log.critical("unexpected error running %r", job, exc_info=True)
            self._settle(job)
            result = job.result
        finally:
            local.job = None
            if run is not None:
                self._unwatch(run)
            abort_quietly(transaction.manager)
        if run is not None and run.expired:
            return  # stopped at its time limit: recorded by the thread that stopped it
        self._record_outcome(job, _job_id(item), result)

    # -- time limits (see zasync.runtime.timelimits) -------------------------------------

    def _watch(self, job: Job[Any], item: WorkItem) -> TimedRun | None:
        """Start the clock of a job that has a time limit; None for one without."""
        limit = limit_for(job, self.timeout)
        if limit is None:
            return None
        manager = transaction.manager.manager
        if not isinstance(manager, RefusingTransactionManager):
            manager = install_refusing_manager()
        run = TimedRun(self, job, item, limit, manager)
        _context.set_run_guard(run)
        self.dispatcher.time_limits.watch(run)
        return run

    def _unwatch(self, run: TimedRun) -> None:
        run.finish()
        self.dispatcher.time_limits.forget(run)
        _context.set_run_guard(None)
        # The stopped job's code is over: other jobs of this thread's batch may commit.
        run.manager.refusing = False

    def _may_go_on(self, job: Job[Any]) -> bool:
        """The running job may be retried, or its outcome stored, by this thread."""
        guard = _context.run_guard()
        return (guard is None or not guard.expired) and self._still_ours(job)

    def stop_timed_out(self, run: TimedRun) -> bool | None:
        """Fail a job past its time limit, then stop its code and abandon its thread.

        Called in a thread of its own; the job's callbacks run here.  Returns
        True once done; False, doing nothing, if the job finished (or was
        handed on) first; None, doing nothing, if it cannot be stopped just
        now (its outcome is being committed, its code has not started): ask
        again soon.
        """
        oid, dbname = run.item
        tm = transaction.TransactionManager()
        conn = self._open(tm)
        abandoned = False
        with self._idle:
            self._stopping += 1
        try:
            tm.begin()
            jar = conn if dbname in ("", conn.db().database_name) else conn.get_connection(dbname)
            job: Job[Any] = jar.get(oid)
            outcome = time_out(
                job,
                run.started_us,
                self._in_our_agent,
                run.limit,
                tm,
                busy=lambda: run.committing or run.over,
            )
            if outcome is None:
                unsettled = run.committing or run.started_us is None
                return None if unsettled and not run.over else False
            with self._lock:
                self.timed_out += 1
            with untraced():  # see untraced: a waiting interruption and a tracer
                abandoned = run.expire(lambda: self._count_out(run.thread, oid))
                if abandoned:
                    self._replace_abandoned()
                    run.await_interruption()
            message = describe_limit(run.limit)
            events_log.warning(
                "job %d stopped: %s; nothing it changed was committed; %s%s",
                int.from_bytes(oid, "big"),
                message,
                "its retry policy put it back in its queue"
                if outcome == RESCHEDULED
                else "it failed with TimeLimitError",
                f"; thread {run.thread.name} is replaced" if abandoned else "",
            )
            self.dispatcher.records.update_job(
                _job_id(run.item),
                result=f"TimeLimitError: {message}",
                failed=True,
                timed_out=True,
                completed=clock.utcnow(),
            )
            job._run_callbacks(tm)
            return True
        finally:
            abort_quietly(tm)
            self._close_quietly(conn)
            with self._idle:
                self._stopping -= 1
                if abandoned:  # counted out by this stop: done with here now
                    self._stopping_oids.discard(oid)
                    self._remember_finished(oid)
                self._idle.notify_all()

    def _count_out(self, thread: threading.Thread, oid: bytes) -> None:
        """Take a thread stuck in a stopped job out of the pool's counts.

        The job stays this pool's (for the orphan check and a graceful stop)
        until its stop is handled, apart from ``_owned``, which a new claim
        of the job (its retry) may fill again meanwhile.
        """
        with self._idle:
            self._abandoned.setdefault(thread, set()).add(oid)
            if thread in self.threads:
                self.threads.remove(thread)
            self.running -= 1
            self._owned.discard(oid)
            self._stopping_oids.add(oid)
            self._idle.notify_all()

    def _replace_abandoned(self) -> None:
        """Start a thread in place of one counted out; its connection stays open meanwhile."""
        self.dispatcher.db.setPoolSize(self.dispatcher.db.getPoolSize() + 1)
        if self.dispatcher.activated:
            self.setSize()
        self.dispatcher.job_done(self)

    def _record_outcome(self, job: Job[Any], job_id: JobId, result: Any) -> None:
        # A job returns itself when it stopped because it is no longer this
        # worker's (handed to another, run elsewhere, stopped at its time
        # limit): nothing to wait for here, and its outcome is not this run's.
        if result is job:
            self.dispatcher.records.update_job(job_id, reassigned=True, completed=clock.utcnow())
            trace_log.info("gave up in thread %d: %r", threading.get_ident(), job)
            return
        waiting = job.stored_status == ACTIVE
        if waiting and IJob.providedBy(result):
            self._park(job)
        text, failed = describe_result(None if waiting else result)
        self.dispatcher.records.update_job(
            job_id,
            result=text,
            failed=failed,
            waiting=waiting,
            completed=None if waiting else clock.utcnow(),
        )
        trace_log.info("completed in thread %d: %r", threading.get_ident(), job)

    def _in_our_agent(self, job: Job[Any]) -> bool:
        agent = job.parent
        if not IAgent.providedBy(agent) or agent.parent is None:
            return False
        return bool(agent.parent.UUID == self.dispatcher.UUID and agent.parent.activated)

    def _still_ours(self, job: Job[Any]) -> bool:
        """The job is in an active agent of this dispatcher, waiting to run or running."""
        return self._in_our_agent(job) and job.stored_status in (ACTIVE, NEW)

    def _park(self, job: Job[Any]) -> None:
        """Take a job that waits for another job out of the agent's slots."""

        def park() -> None:
            agent = job.parent
            if job.stored_status == ACTIVE and self._in_our_agent(job) and job in list(agent):
                agent.park(job)

        never_fail(park, f"parking {job!r}", transaction.manager)

    def _settle(self, job: Job[Any]) -> None:
        """Move a job that escaped with an error out of the agent, whatever it takes.

        Works in a fresh connection: the thread's own may be what broke (a
        job can close it).  If even settling fails, the dispatcher's next
        poll quarantines the job, so that nothing retries it for ever.
        """
        oid, dbname = job._p_oid, job._p_jar.db().database_name
        tm = transaction.TransactionManager()
        conn = self._open(tm)
        try:
            tm.begin()
            jar = conn if dbname == conn.db().database_name else conn.get_connection(dbname)
            fresh = jar.get(oid)
            never_fail(lambda: _settle_unit(fresh), f"settling {fresh!r} after an error", tm)
        except BaseException as error:
            abort_quietly(tm)
            cause = f"zasync could not settle it after an error: {describe(error)}"
            events_log.critical("%s; it is quarantined", cause, exc_info=True)
            self.dispatcher.quarantine_later(oid, cause)
        finally:
            abort_quietly(tm)
            self._close_quietly(conn)


def _job_id(item: WorkItem) -> JobId:
    return (int.from_bytes(item[0], "big"), item[1])


def _settle_unit(job: Job[Any]) -> None:
    status = job.status
    if status == COMPLETED:
        agent = job.parent
        if IAgent.providedBy(agent) and job in list(agent):
            agent.jobCompleted(job)
    elif status == CALLBACKS:
        job.resumeCallbacks()
    elif status == ACTIVE:
        job.handleInterrupt()
    elif status in (ASSIGNED, PENDING):
        agent = job.parent
        if IAgent.providedBy(agent):
            agent.remove(job)
            queue = agent.queue
            if queue is not None:
                queue.putBack(job)
