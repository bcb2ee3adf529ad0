"""The claim transaction of a dispatcher: activating in a queue, filing, claiming, orphans.

:class:`Claiming` is the part of :class:`~zasync.runtime.dispatcher.Dispatcher`
that runs inside its poll thread's transactions, for one queue at a time:
register and activate this process there (taking over a record of its own
earlier run), install its agents, then in one commit file completed jobs,
claim up to each agent's size, mark the claimed jobs ACTIVE and ping.  What it
needs of the dispatcher is declared below; the dispatcher defines it.
"""

from __future__ import annotations

import datetime
import logging
import uuid as uuid_module
from typing import TYPE_CHECKING, Any

import transaction
import ZODB
from ZODB.Connection import Connection

from zasync import clock
from zasync._dbtime import database_now, note_commit_of, seen_now
from zasync.errors import ZasyncError
from zasync.interfaces import ACTIVE, COMPLETED, NEW
from zasync.model.agent import Agent
from zasync.model.dispatchers import DispatcherAgents
from zasync.model.failure import Failure
from zasync.model.job import Job
from zasync.model.lanes import DispatcherShare
from zasync.model.quarantine import unsound
from zasync.model.queue import Queue
from zasync.model.retry import needs_start_commit
from zasync.model.tx import (
    TRANSACTION_ERRORS,
    disconnect_errors,
    try_transaction_five_times,
)
from zasync.runtime.config import AgentSpec
from zasync.runtime.pool import AgentThreadPool
from zasync.runtime.records import JobId, Records, new_job_record

events_log = logging.getLogger("zasync.events")
trace_log = logging.getLogger("zasync.trace")


def _job_id(job: Job[Any]) -> JobId:
    return (int.from_bytes(job._p_oid, "big"), job._p_jar.db().database_name)


def _queue_name(queue: Queue) -> str:
    """The name of a queue the poll reached through the Queues mapping (so it has one)."""
    if queue.name is None:
        raise ZasyncError("a queue in no Queues mapping cannot be claimed from", queue=queue)
    return queue.name


class Claiming:
    """The claim transaction, mixed into the dispatcher (see the module documentation)."""

    UUID: uuid_module.UUID
    db: ZODB.DB
    conn: Connection | None
    records: Records
    activated: datetime.datetime | bool | None
    sole_owner: bool
    ping_interval: float | None
    death_interval: float | None
    agent_specs: tuple[AgentSpec, ...]
    pools: dict[tuple[str, str], AgentThreadPool]
    _retiring: list[AgentThreadPool]
    _activated_queues: set[bytes]
    _refused: dict[str, int]
    _unsettled: dict[bytes, str]
    _watched: set[bytes]
    _paused_queues: set[str]
    _claiming: bool

    if TYPE_CHECKING:

        def wake(self) -> None: ...

        def _note_next_due(self, due: datetime.datetime | None) -> None: ...

        def _ensure_pool(self, queue_name: str, agent_name: str, threads: int) -> None: ...

    def _activate_in(self, queue: Queue, tm: transaction.TransactionManager) -> bool:
        """Make sure this process is registered and active in ``queue``."""
        if queue._p_oid in self._activated_queues:
            da = queue.dispatchers.get(self.UUID)
            if da is not None and da.activated:
                return True
            events_log.warning(
                "dispatcher %s was deactivated in queue %r by another process; reactivating",
                self.UUID,
                queue.name,
            )
            self._activated_queues.discard(queue._p_oid)

        def unit() -> bool:
            if self.UUID not in queue.dispatchers:
                queue.dispatchers.register(self.UUID)
            da = queue.dispatchers[self.UUID]
            if da.activated:
                if not da.dead_at(database_now(self.conn)) and not self._ended_run(da):
                    return False
                da.hold_liveness()
                da.deactivate()  # our previous incarnation died: recover its jobs
            if self.ping_interval is not None:
                da.ping_interval = datetime.timedelta(seconds=self.ping_interval)
            if self.death_interval is not None:
                da.ping_death_interval = datetime.timedelta(seconds=self.death_interval)
            da.activate()
            self._install_agents(queue, da)
            return True

        oid = int.from_bytes(queue._p_oid, "big")
        # Watch before the claim's snapshot is taken: a put committed between that
        # snapshot and a later watch would wake nobody until the next timed poll.
        self._watched.add(queue._length._p_oid)
        self._watched.add(queue._p_oid)  # its resume (see Queue.pause) wakes the poll
        result = try_transaction_five_times(
            unit,
            f"activating dispatcher UUID {self.UUID} in queue {queue.name!r} (oid {oid})",
            tm,
            reraise=disconnect_errors(),
        )
        if result is True:
            note_commit_of(queue.dispatchers[self.UUID].last_ping)  # activating pinged
            self._activated_queues.add(queue._p_oid)
            self._refused.pop(_queue_name(queue), None)
            return True
        if result is False:
            self._log_refusal(queue, oid)
        return False

    def _ended_run(self, da: DispatcherAgents) -> bool:
        """``da`` was activated by an earlier run of this worker, which has surely ended."""
        started = self.activated
        if not self.sole_owner or not isinstance(started, datetime.datetime):
            return False
        activated = da.activated
        if activated is None or activated >= started:
            return False  # not active, or activated by this very run: not an earlier one's
        events_log.info(
            "dispatcher %s takes over its own record in queue %r, active since %s: this "
            "process holds the database file, so the run that left it has ended",
            self.UUID,
            da.parent.name if da.parent is not None else None,
            activated.isoformat(),
        )
        return True

    def _log_refusal(self, queue: Queue, oid: int) -> None:
        name = _queue_name(queue)
        count = self._refused[name] = self._refused.get(name, 0) + 1
        da = queue.dispatchers[self.UUID]
        reference = da.last_alive() or clock.utcnow()
        level = logging.ERROR if count == 1 else logging.WARNING
        if count == 1 or count % 10 == 0:
            events_log.log(
                level,
                "UUID %s already activated in queue %s (oid %d): another process? "
                "(To stop polling this queue, stop this worker: zasync.runtime.dispatcher.get()."
                "stop().)  If the other process is gone, its record counts as dead and "
                "is taken over after %s",
                self.UUID,
                queue.name,
                oid,
                (reference + da.ping_death_interval).isoformat(),
            )

    def _install_agents(self, queue: Queue, da: DispatcherAgents) -> None:
        for spec in self.agent_specs:
            if spec.queue != queue.name:
                continue
            agent = da.get(spec.name)
            if agent is None:
                da[spec.name] = Agent(size=spec.size, filter=spec.filter, threads=spec.threads)
                events_log.info("agent %r added to queue %r", spec.name, queue.name)
            else:
                agent.size, agent.threads, agent.filter = spec.size, spec.threads, spec.filter

    def _claim_in(
        self, queue: Queue, queue_info: dict[str, Any], tm: transaction.TransactionManager
    ) -> list[JobId] | None:
        """File, claim and ping in one transaction; hand claimed jobs to the pools.

        None if the transaction failed: then nothing was claimed, and the
        queue's agents are not known from this poll.
        """
        da = queue.dispatchers[self.UUID]
        careful = False
        self._note_pause(queue)

        def unit() -> tuple[list[tuple[str, Job[Any]]], dict[str, Any]]:
            now = seen_now(queue._p_jar)  # a put this view sees is due by now
            claimed: list[tuple[str, Job[Any]]] = []
            details: dict[str, Any] = {}
            lane = self._lanes_in(queue)
            for agent_name, agent in da.items():
                held = list(agent)
                details[agent_name] = {
                    "size": agent.size,
                    "len": None,
                    "error": None,
                    "new jobs": [],
                    "active jobs": [_job_id(j) for j in held],
                }
                for job in [*held, *agent.parked()]:
                    cause = self._unsettled.get(job._p_oid)
                    bad = (job, cause) if cause is not None else unsound(job)
                    if bad is not None:
                        agent.drop(job)
                        queue.quarantine(*bad)
                    elif job.stored_status == COMPLETED:
                        agent.jobCompleted(job)
                    elif job in held and self._orphaned(_queue_name(queue), agent_name, job):
                        self._reclaim(queue, da, agent, job)
                details[agent_name]["len"] = len(agent)
                for job in agent.claim_jobs(lane, careful) if self._claiming else ():
                    if job.stored_status == NEW and not needs_start_commit(job):
                        # A rate limit recorded its start: the job starts then.
                        job._mark_active(max(now, getattr(job, "_v_started", None) or now))
                    claimed.append((agent_name, job))
            deaths = sum(p.deaths for (q, _), p in self.pools.items() if q == queue.name)
            if da.thread_deaths != deaths:  # rare: written only when a thread died
                da.thread_deaths = deaths
            queue.dispatchers.ping(self.UUID)
            self._note_next_due(queue.next_due_after(now))
            return claimed, details

        identifier = f"claiming for UUID {self.UUID} in queue {queue.name!r}"
        unsettled = dict(self._unsettled)
        note = f"zasync: claim by {self.UUID} in queue {queue.name!r}"
        result = try_transaction_five_times(
            unit, identifier, tm, reraise=disconnect_errors(), note=note
        )
        if isinstance(result, Failure) and not result.check(*TRANSACTION_ERRORS):
            # Not a conflict: perhaps a job whose state cannot be stored.  Claim
            # again, checking each job as its commit would (and quarantining).
            careful = True
            result = try_transaction_five_times(
                unit,
                f"{identifier}, checking each job",
                tm,
                reraise=disconnect_errors(),
                note=note,
            )
        if isinstance(result, Failure):
            queue_info["error"] = repr(result)
            self._ping_alone(queue, tm)
            return None
        note_commit_of(da.last_ping)  # a no-op unless this claim's commit pinged
        for oid in unsettled:
            if not any(job._p_oid == oid for agent in da.values() for job in agent):
                self._unsettled.pop(oid, None)  # quarantined (or gone)
        claimed, details = result
        queue_info.update(details)
        started: list[JobId] = []
        name = _queue_name(queue)
        for agent_name, agent in da.items():
            self._ensure_pool(name, agent_name, agent.threads)
        for agent_name, job in claimed:
            job_id = _job_id(job)
            self.records.add_job(job_id, new_job_record(repr(job), tuple(job.quota_names)))
            details[agent_name]["new jobs"].append(job_id)
            started.append(job_id)
            self.pools[(name, agent_name)].assign((job._p_oid, job_id[1]))
        return started

    def _note_pause(self, queue: Queue) -> None:
        """Log once when this worker finds a queue paused, and once when it runs again."""
        name = _queue_name(queue)
        if queue.paused and name not in self._paused_queues:
            self._paused_queues.add(name)
            events_log.info(
                "queue %r is paused (since %s%s): claiming nothing from it",
                name,
                queue.paused_at.isoformat() if queue.paused_at else "?",
                f", {queue.pause_reason}" if queue.pause_reason else "",
            )
        elif not queue.paused and name in self._paused_queues:
            self._paused_queues.discard(name)
            events_log.info("queue %r resumed: claiming from it again", name)

    def quarantine_later(self, oid: bytes, cause: str) -> None:
        """Have the next poll quarantine a held job that a thread could not settle."""
        self._unsettled[oid] = cause
        self.wake()

    def _ping_alone(self, queue: Queue, tm: transaction.TransactionManager) -> None:
        """Ping in a transaction of its own: liveness must not hang on a failed claim."""
        try_transaction_five_times(
            lambda: queue.dispatchers.ping(self.UUID),
            f"pinging for UUID {self.UUID} in queue {queue.name!r}",
            tm,
            reraise=disconnect_errors(),
        )

    def _lanes_in(self, queue: Queue) -> DispatcherShare | None:
        """This dispatcher's share of ``queue``'s lanes among its active dispatchers.

        Lanes only help when other dispatchers claim from the queue too.  The
        active dispatchers, in UUID order, split the lanes between them and
        leave each other's jobs alone while the owner can take them, so their
        claims rarely go for the same job (see :mod:`zasync.model.lanes`).
        """
        active = [(uuid, da) for uuid, da in queue.dispatchers.items() if da.activated]
        uuids = [uuid for uuid, _ in active]
        if len(active) < 2 or self.UUID not in uuids:
            return None
        return DispatcherShare([da for _, da in active], uuids.index(self.UUID), queue.lane_count)

    def _orphaned(self, queue_name: str, agent_name: str, job: Job[Any]) -> bool:
        """Held here in the database, yet not waiting or running in this process.

        It happens when a claim's commit succeeded but its answer was lost
        (the connection broke in the commit): the poll saw an error and handed
        nothing to the threads.  Without this check such jobs would wait in
        a live worker's agent for ever.
        """
        pool = self.pools.get((queue_name, agent_name))
        pools = [*self._retiring, *([] if pool is None else [pool])]
        return not any(p.owns(job._p_oid) for p in pools)

    def _reclaim(self, queue: Queue, da: DispatcherAgents, agent: Agent, job: Job[Any]) -> None:
        """Give an orphaned job back: to the queue if it never started here, else as interrupted."""
        try:
            started = self.records.job_info(*_job_id(job)).get("started") is not None
        except (KeyError, ValueError):
            started = False
        events_log.warning(
            "%r was claimed here but never reached a thread (a commit whose answer was "
            "lost?); handing it back%s",
            job,
            " as interrupted" if started else "",
        )
        agent.remove(job)
        if started or job.stored_status not in (ACTIVE, NEW):
            da._hand_back(queue, agent, job)
        else:
            job._unclaim()
            queue.putBack(job)
