"""The dispatcher: the part of a worker process that claims jobs and runs them.

One process runs one dispatcher, identified by the process UUID.  Its poll
thread keeps one connection and, for each queue in ``root[KEY]``:

1. activates the process's ``DispatcherAgents`` record there (once), installing
   the configured agents;
2. in **one** transaction: files the agents' completed jobs in their completed
   collections, claims jobs up to each agent's ``size`` and marks them ACTIVE
   (the commit a job would otherwise make to start), and pings;
3. hands the claimed jobs to the agents' thread pools.

A poll runs every ``poll_interval`` seconds, and sooner: at once when a commit
changes a queue (a ``put`` in this process, or in another one whose commit
this database is told about) while a pool has room, or when a pool's backlog
runs low; and when the next waiting job becomes due.  So a job's commits are
usually its claim (shared with many jobs) and its result.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
import uuid as uuid_module
from collections.abc import Callable, Collection, Iterable
from typing import Any

import pydantic
import transaction

from zasync import clock
from zasync._dbtime import note_commit_of
from zasync.errors import AlreadyActivatedError, AlreadyRegisteredError, NotActivatedError
from zasync.identity import get_process_uuid
from zasync.interfaces import ACTIVE, KEY, NEW
from zasync.model import _awaitables, _context
from zasync.model.job import Job
from zasync.model.tx import (
    abort_quietly,
    fresh_connection,
    report_storage_failure,
    system_errors,
    try_transaction_five_times,
)
from zasync.runtime._limits import Seconds, check_intervals
from zasync.runtime.claim import Claiming
from zasync.runtime.config import AgentSpec
from zasync.runtime.introspection import Introspection
from zasync.runtime.pool import AgentThreadPool, WorkItem
from zasync.runtime.records import JobId, PollInfo, Records
from zasync.runtime.timelimits import TimeLimits
from zasync.storage.pgwake import CommitListener, relstorage_dsn
from zasync.storage.watch import ChangePoller, commit_watcher

events_log = logging.getLogger("zasync.events")
trace_log = logging.getLogger("zasync.trace")


class _Arguments(pydantic.BaseModel):
    """The types and ranges of a Dispatcher's settings, checked when it is made."""

    model_config = pydantic.ConfigDict(strict=True)

    uuid: uuid_module.UUID | None
    poll_interval: Seconds
    polls_size: pydantic.PositiveInt
    jobs_size: pydantic.PositiveInt
    ping_interval: Seconds | None
    death_interval: Seconds | None

    @pydantic.model_validator(mode="after")
    def _intervals(self) -> _Arguments:
        check_intervals(self.poll_interval, self.ping_interval, self.death_interval)
        return self


# -- registry -------------------------------------------------------

_registry: dict[uuid_module.UUID, Dispatcher] = {}
_registry_lock = threading.Lock()


def get(uuid: uuid_module.UUID | None = None, default: Any = None) -> Any:
    """The dispatcher registered for ``uuid`` (default: this process's), or ``default``."""
    with _registry_lock:
        return _registry.get(uuid or get_process_uuid(), default)


def pop(uuid: uuid_module.UUID | None = None) -> Dispatcher:
    """Remove and return a registered dispatcher; KeyError if missing."""
    with _registry_lock:
        return _registry.pop(uuid or get_process_uuid())


def clear() -> None:
    """Forget every registered dispatcher (tests)."""
    with _registry_lock:
        _registry.clear()


def _job_id(job: Job[Any]) -> JobId:
    return (int.from_bytes(job._p_oid, "big"), job._p_jar.db().database_name)


class Dispatcher(Claiming, Introspection):
    """Claims and runs jobs for one process; see the module documentation."""

    thread: threading.Thread | None = None
    #: What ended the poll thread while the dispatcher was active, if anything did.
    poll_thread_error: BaseException | None = None
    _change_poller: ChangePoller | None = None
    #: Storages without commit notifications (RelStorage) are checked for
    #: queue changes this often, so a put wakes the dispatcher without
    #: waiting for ``poll_interval``.
    change_poll_interval = 0.05

    def __init__(
        self,
        db: Any,
        uuid: uuid_module.UUID | None = None,
        poll_interval: float = 5.0,
        agents: Iterable[AgentSpec] = (AgentSpec(),),
        polls_size: int = 400,
        jobs_size: int = 1000,
        ping_interval: float | None = None,
        death_interval: float | None = None,
        sole_owner: bool = False,
    ) -> None:
        _Arguments(
            uuid=uuid,
            poll_interval=poll_interval,
            polls_size=polls_size,
            jobs_size=jobs_size,
            ping_interval=ping_interval,
            death_interval=death_interval,
        )
        agents = tuple(agents)
        for spec in agents:
            if not isinstance(spec, AgentSpec):
                raise TypeError(f"agents must be AgentSpec instances, not {spec!r}")
        self.ping_interval = ping_interval
        self.death_interval = death_interval
        self.db = db
        self.UUID = uuid or get_process_uuid()
        self.poll_interval = poll_interval
        self.agent_specs = agents
        #: No other process can be running as this UUID (this one holds the
        #: database file's lock): a record of this UUID still active from
        #: before this dispatcher started belongs to a run that has ended,
        #: and is taken over at once instead of after the death interval.
        self.sole_owner = bool(sole_owner)
        self.records = Records(polls_size, jobs_size)
        self.activated: datetime.datetime | bool | None = False
        self.pools: dict[tuple[str, str], AgentThreadPool] = {}
        self._retiring: list[AgentThreadPool] = []  # retired pools still finishing jobs
        self._activated_queues: set[bytes] = set()
        self._refused: dict[str, int] = {}
        self._heartbeat: threading.Thread | None = None
        self._heartbeat_stop = threading.Event()
        self._unsettled: dict[bytes, str] = {}  # held jobs to quarantine: oid -> cause
        self._watched: set[bytes] = set()
        self._paused_queues: set[str] = set()  # queues this worker found paused (logged once)
        self._next_due: datetime.datetime | None = None  # of the jobs this poll saw waiting
        self._wake = threading.Event()
        self._hurry = threading.Event()
        self._claiming = True
        self._stop_polling = False
        self._poll_failures = 0
        self._last_poll_dump: PollInfo | None = None
        self._runner: _awaitables.AwaitableRunner | None = None
        #: The deadlines of jobs run here under a time limit.
        self.time_limits = TimeLimits(f"zasync-time-limits-{self.UUID}")
        self._previous_runner: _awaitables.AwaitableRunner | None = None
        self.conn: Any = None
        with _registry_lock:
            if self.UUID in _registry:
                raise AlreadyRegisteredError(
                    "dispatcher for this UUID is already registered in this process "
                    f"({self.UUID}): deactivate the other one, or give this one its own UUID"
                )
            _registry[self.UUID] = self

    # -- starting and stopping -------------------------------------------------------

    def activate(self) -> None:
        """Start polling in a thread of its own; see the module documentation."""
        if self.activated:
            raise AlreadyActivatedError(f"already activated (dispatcher {self.UUID})")
        events_log.info("attempting to activate dispatcher %s", self.UUID)
        self.thread = None  # until the new poll thread runs (see poll_thread_died)
        self.activated = clock.utcnow()
        self.records.clear()
        self._activated_queues.clear()
        self._claiming = True
        self._stop_polling = False
        self.poll_thread_error = None
        self._hurry.clear()
        self.db.setPoolSize(self.db.getPoolSize() + 2)  # the poll and heartbeat threads
        self._runner = _awaitables.AwaitableRunner(thread_initializer=_defer_filing)
        self._previous_runner = _awaitables.set_runner(self._runner)
        watcher = commit_watcher(self.db)
        watcher.subscribe(self._on_commit)
        if not watcher.supported:  # RelStorage: look for queue changes instead
            dsn = relstorage_dsn(self.db.storage)
            self._change_poller = ChangePoller(
                self.db,
                lambda: self._watched,
                self._on_commit,
                self.change_poll_interval,
                name=f"zasync-change-poller-{self.UUID}",
                listener=None if dsn is None else CommitListener(dsn),
            )
            self._change_poller.start()
        thread = threading.Thread(
            target=self._poll_loop, name=f"zasync-dispatcher-{self.UUID}", daemon=True
        )
        thread.start()
        self.thread = thread
        self._heartbeat_stop.clear()
        self._heartbeat = threading.Thread(
            target=self._heartbeat_loop, name=f"zasync-heartbeat-{self.UUID}", daemon=True
        )
        self._heartbeat.start()

    def wake(self) -> None:
        """Ask for a poll now rather than at the next interval."""
        self._wake.set()

    def stop(self, grace: float = 30.0) -> bool:
        """Stop gracefully; True if every running job finished within ``grace`` seconds.

        Claiming stops; claimed jobs that have not started go back to the front
        of their queue (no interruption is counted); running jobs get ``grace``
        seconds; then the dispatcher deactivates, and jobs still running are
        handed to their retry policies as interrupted.
        """
        if not self.activated:
            return True
        self._claiming = False
        self._halt_polling()
        backlog = [(pool, item) for pool in self.pools.values() for item in pool.take_backlog()]
        if backlog:
            self._hand_back(backlog)
        deadline = time.monotonic() + grace
        drained = False
        while not self._hurry.is_set():
            drained = all(pool.wait_idle(0.05) for pool in self.pools.values())
            if drained or time.monotonic() > deadline:
                break
        if not drained:
            events_log.warning(
                "dispatcher %s: jobs still running after %s s; interrupting them", self.UUID, grace
            )
        self.deactivate()
        return drained

    def hurry(self) -> None:
        """End a graceful stop's wait for running jobs now (a second signal)."""
        self._hurry.set()

    def is_idle(self) -> bool:
        """Nothing claimed, waiting or running here, as of the latest poll."""
        poll = self.records.latest_poll()
        if poll is None or any(p.running or p.backlog() for p in self.pools.values()):
            return False
        for agents in poll.values():
            for info in (agents or {}).values():
                if info["new jobs"] or info["len"]:
                    return False
        return True

    def deactivate(self) -> None:
        """Stop now: deactivate this process's records in every queue."""
        if not self.activated:
            raise NotActivatedError(f"not activated (dispatcher {self.UUID}): activate it first")
        self.activated = None
        try:
            self._halt_polling()
            commit_watcher(self.db).unsubscribe(self._on_commit)
            if self._change_poller is not None:
                self._change_poller.stop()
                self._change_poller = None

            def unit(conn: Any) -> None:
                queues = conn.root().get(KEY)
                for queue in [] if queues is None else queues.values():
                    da = queue.dispatchers.get(self.UUID)
                    if da is not None and da.activated:
                        da.deactivate()

            self._in_fresh_connection(unit, f"deactivate dispatcher {self.UUID}")
            self.time_limits.stop()
            released = sum(-pool.setSize(0) for pool in self.pools.values())
            self.pools.clear()
            self.db.setPoolSize(max(1, self.db.getPoolSize() - released - 2))
            if self._runner is not None:
                _awaitables.set_runner(self._previous_runner)
                self._runner.close()
                self._runner = None
            events_log.info("deactivated dispatcher %s", self.UUID)
        finally:
            self.activated = False

    def _halt_polling(self) -> None:
        self._stop_polling = True
        self._wake.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=60)
        self._heartbeat_stop.set()
        if self._heartbeat is not None and self._heartbeat is not threading.current_thread():
            self._heartbeat.join(timeout=60)

    # -- the heartbeat -----------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        """Keep this worker's pings fresh in a thread and transaction of their own.

        Polls ping too, but a poll can take long (an agent filter that is
        slow, a large claim) or fail; a live worker must not look dead to
        its siblings meanwhile, or they would run its jobs a second time.
        Only the ping is written here; judging siblings stays with polls.
        """
        tm = transaction.TransactionManager()
        conn: Any = None
        while not self._heartbeat_stop.is_set():
            interval = self.ping_interval if self.ping_interval is not None else 30.0
            try:
                if conn is None:
                    conn = self.db.open(transaction_manager=tm)
                tm.begin()
                pinged = self._beat(conn.root().get(KEY))
                tm.commit()
                for ping in pinged:
                    note_commit_of(ping)
            except Exception:  # conflicts, outages: the next beat (or poll) tries again
                abort_quietly(tm)
                trace_log.debug("heartbeat of %s failed", self.UUID, exc_info=True)
            self._heartbeat_stop.wait(max(0.05, interval / 3))
        if conn is not None:
            abort_quietly(tm)
            conn.close()

    def _beat(self, queues: Any) -> list[Any]:
        """Ping where a ping is due; return the pings written (their commits measure the clock)."""
        written = []
        for queue in [] if queues is None else queues.values():
            da = queue.dispatchers.get(self.UUID)
            if da is not None and da.activated and queue._p_oid in self._activated_queues:
                da.beat()
                if da.last_ping._p_changed:
                    written.append(da.last_ping)
        return written

    # -- the poll loop ---------------------------------------------------------------

    def _poll_loop(self) -> None:
        try:
            tm = transaction.TransactionManager()
            self.conn = self.db.open(transaction_manager=tm)
            self._tm = tm
            try:
                while self.activated and not self._stop_polling:
                    try:
                        self._wake.wait(self._poll_once())
                        self._wake.clear()
                    except Exception:  # outside the poll itself: log, pause, go on
                        events_log.exception("poll loop of dispatcher %s failed", self.UUID)
                        time.sleep(1.0)  # a guard against a hot loop, not a backoff: real time
            finally:
                try:
                    abort_quietly(tm)
                finally:
                    self.conn.close()
                    self.conn = None
        except BaseException as e:  # SystemExit, or the database gone for good
            events_log.critical(
                "the poll thread of dispatcher %s died: this worker claims nothing more",
                self.UUID,
                exc_info=True,
            )
            self.poll_thread_error = e  # after the log line: watchers act on this

    def _poll_once(self) -> float:
        """Poll, logging and counting failures; return how long to wait for the next poll."""
        try:
            self.poll()
        except Exception as error:
            self._poll_failures += 1
            if isinstance(error, system_errors()):
                report_storage_failure(f"poll of dispatcher {self.UUID}", error)
            elif self._poll_failures == 1 or self._poll_failures % 10 == 0:
                events_log.error(
                    "poll of dispatcher %s failed (%d in a row); retrying",
                    self.UUID,
                    self._poll_failures,
                    exc_info=True,
                )
            return min(self.poll_interval, 0.1 * 2.0 ** min(self._poll_failures, 6))
        if self._poll_failures:
            events_log.info("dispatcher %s: polls work again", self.UUID)
        self._poll_failures = 0
        if self._next_due is not None and not clock.is_pinned():
            # Sleep until the next job is due if that comes first: a job due a
            # moment after this poll would otherwise wait a whole interval.
            until = (self._next_due - clock.utcnow()).total_seconds()
            return max(0.0, min(self.poll_interval, until))
        return self.poll_interval

    def _note_next_due(self, due: datetime.datetime | None) -> None:
        """Remember the earliest time a waiting job becomes due, over this poll's queues."""
        if due is not None and (self._next_due is None or due < self._next_due):
            self._next_due = due

    @property
    def poll_thread_died(self) -> bool:
        """Active, yet its poll thread has ended: a worker process should exit and restart."""
        if not self.activated or self._stop_polling or self.thread is None:
            return False
        return self.poll_thread_error is not None or not self.thread.is_alive()

    def poll(self) -> PollInfo:
        """Run one poll now, in the calling thread (the poll thread, or a test)."""
        self.records.mark_poll_start()
        self._next_due = None
        info = PollInfo()
        started: list[JobId] = []
        tm = self._tm
        try:
            tm.begin()
            queues = self.conn.root().get(KEY)
            if queues is None:
                return info
            unsure: set[str] = set()  # queues whose claim failed: their agents are unknown
            for name, queue in queues.items():
                info[name] = None
                if self._activate_in(queue, tm):
                    info[name] = {}
                    claimed = self._claim_in(queue, info[name], tm)
                    if claimed is None:
                        unsure.add(name)
                    else:
                        started.extend(claimed)
            self._retire_pools(info, unsure)
            return info
        finally:
            abort_quietly(tm)
            self.records.add_poll(info, started)
            if info != self._last_poll_dump and trace_log.isEnabledFor(logging.DEBUG):
                trace_log.debug("poll %s: %r", info.key, dict(info))
            self._last_poll_dump = info

    # -- pools -----------------------------------------------------------------------

    def _ensure_pool(self, queue_name: str, agent_name: str, threads: int) -> None:
        pool = self.pools.get((queue_name, agent_name))
        if pool is None:
            pool = self.pools[(queue_name, agent_name)] = AgentThreadPool(
                self, queue_name, agent_name
            )
        spec = next(
            (s for s in self.agent_specs if (s.queue, s.name) == (queue_name, agent_name)), None
        )
        pool.batch = 1 if spec is None else spec.batch
        pool.timeout = None if spec is None else spec.timeout
        delta = threads - pool.getSize()
        if delta > 0:  # room first: new threads open their connections at once
            self.db.setPoolSize(self.db.getPoolSize() + delta)
            pool.setSize(threads)
        elif delta < 0:
            pool.setSize(threads)
            self.db.setPoolSize(max(1, self.db.getPoolSize() + delta))

    def _retire_pools(self, info: PollInfo, unsure: Collection[str] = ()) -> None:
        """Stop the pools of agents this poll saw removed (not of queues it could not read).

        A retired pool's threads finish the jobs it holds; until they are
        done with them it stays in ``_retiring``, so the orphan check still
        sees those jobs as this process's.
        """
        self._retiring = [pool for pool in self._retiring if pool.holds_anything()]
        for key in list(self.pools):
            queue_name, agent_name = key
            agents = info.get(queue_name)
            if queue_name in unsure:
                continue
            if queue_name in info and agents is not None and agent_name not in agents:
                pool = self.pools.pop(key)
                self._retiring.append(pool)
                self.db.setPoolSize(max(1, self.db.getPoolSize() + pool.setSize(0)))

    def thread_exited(self, pool: AgentThreadPool) -> None:
        """A thread of ``pool`` ended: bring the pool back to its size while active."""
        if self.activated and self.pools.get((pool.queue_name, pool.agent_name)) is pool:
            pool.setSize()

    def job_done(self, pool: AgentThreadPool) -> None:
        """A worker finished a job: poll soon if the pool's backlog is running low."""
        if self._claiming and pool.backlog() <= max(1, pool.getSize() // 2):
            self._wake.set()

    def _has_room(self) -> bool:
        if not self.pools:
            return True
        return any(pool.backlog() < max(1, pool.getSize()) for pool in self.pools.values())

    def _on_commit(self, tid: bytes, oids: Collection[bytes], local: bool) -> None:
        if threading.current_thread() is self.thread or not self._claiming:
            return
        watched = self._watched
        if watched and any(oid in watched for oid in oids) and self._has_room():
            self._wake.set()

    def _hand_back(self, items: list[tuple[AgentThreadPool, WorkItem]]) -> None:
        """Return claimed jobs that never started to the front of their queues."""

        def unit(conn: Any) -> None:
            for _pool, (oid, dbname) in items:
                job = (
                    conn.get(oid)
                    if dbname == conn.db().database_name
                    else conn.get_connection(dbname).get(oid)
                )
                agent = job.parent
                if agent is None or getattr(agent, "parent", None) is None:
                    continue
                if agent.parent.UUID != self.UUID or job.stored_status not in (ACTIVE, NEW):
                    continue
                job._unclaim()
                queue = agent.queue
                agent.remove(job)
                queue.putBack(job)

        self._in_fresh_connection(unit, f"hand back unstarted jobs of {self.UUID}")

    def _in_fresh_connection(self, unit: Callable[[Any], Any], what: str) -> Any:
        """Run ``unit(conn)`` in a connection of its own and commit (five tries)."""
        with fresh_connection(self.db) as (conn, tm):
            tm.begin()
            return try_transaction_five_times(lambda: unit(conn), what, tm, note=f"zasync: {what}")

    def __repr__(self) -> str:
        return f"<Dispatcher {self.UUID} {'active' if self.activated else 'inactive'}>"


def _defer_filing() -> None:
    _context.set_filing_deferred(True)
