"""The registry of dispatchers (worker processes) in a queue, and their liveness.

Every dispatcher registers its UUID in each queue it works on, activates, and
pings.  Each live dispatcher watches the next one in UUID order: if that one
has not pinged for ``ping_death_interval``, it is deactivated and its jobs
are handed back to the queue.

Pings are judged in the database's time (the commit times of transaction
ids), so machines' clocks may disagree, and a judge's view of the database
may be old, without a live dispatcher being declared dead.
"""

from __future__ import annotations

import datetime
import logging
import uuid as uuid_module
from typing import Any

import zope.event
from BTrees.OOBTree import OOBTree
from zope.interface import implementer
from zope.minmax import Maximum

from zasync import clock
from zasync._dbtime import commit_time, in_database, view_time
from zasync.errors import (
    AgentBusyError,
    AlreadyActivatedError,
    AlreadyRegisteredError,
    InvalidValueError,
    NotActivatedError,
)
from zasync.interfaces import (
    ACTIVE,
    ASSIGNED,
    CALLBACKS,
    COMPLETED,
    NEW,
    PENDING,
    IAgent,
    IDispatcherAgents,
    IDispatchers,
)
from zasync.model._base import MappingBase
from zasync.model.events import (
    DispatcherActivated,
    DispatcherDeactivated,
    DispatcherRegistered,
    DispatcherUnregistered,
)
from zasync.model.quarantine import unsound
from zasync.model.retry import RetryCommonForever

events_log = logging.getLogger("zasync.events")


@implementer(IDispatcherAgents)
class DispatcherAgents(MappingBase):
    """One dispatcher's agents in one queue, with its activation and pings."""

    ping_interval = datetime.timedelta(seconds=30)
    ping_death_interval = datetime.timedelta(seconds=60)
    #: Worker threads of this dispatcher that died (and were replaced) since
    #: it activated here, as its polls report them: operators see it in
    #: ``zasync dispatchers`` and the dashboard, not only in the worker's log.
    thread_deaths = 0

    def __init__(self, uuid: uuid_module.UUID) -> None:
        self.UUID = uuid
        self.activated: datetime.datetime | None = None
        self.last_ping = Maximum()
        self._data = OOBTree()

    # -- mapping of agents -------------------------------------------------------

    def __setitem__(self, name: str, agent: Any) -> None:
        if not IAgent.providedBy(agent):
            raise InvalidValueError(f"value must be IAgent (an zasync.Agent), not {agent!r}")
        if len(agent):
            raise AgentBusyError(
                "cannot add an agent with active jobs: add an empty agent, it claims its own jobs"
            )
        old = self._data.get(name)
        if old is not None and old is not agent:
            if len(old):
                raise AgentBusyError(
                    f"cannot remove an agent with active jobs ({name!r} holds {len(old)}): "
                    "let them finish, or deactivate its dispatcher first"
                )
            old.parent = None
            old.name = None
        agent.name = name
        agent.parent = self
        self._data[name] = agent

    def pop(self, name: str, *default: Any) -> Any:
        """Remove and return an agent; refuses one holding jobs."""
        agent = self._data.get(name)
        if agent is None:
            if default:
                return default[0]
            raise KeyError(name)
        if len(agent):
            raise AgentBusyError(
                f"cannot remove an agent with active jobs ({name!r} holds {len(agent)}): "
                "let them finish, or deactivate its dispatcher first"
            )
        del self._data[name]
        agent.parent = None
        agent.name = None
        return agent

    def __delitem__(self, name: str) -> None:
        self.pop(name)

    # -- liveness ----------------------------------------------------------------

    def last_alive(self) -> datetime.datetime | None:
        """When this dispatcher was last seen alive: its latest ping or activation.

        A stored record goes by the database's time of the commits that wrote
        its ping (see :mod:`zasync._dbtime`), so no machine's clock enters a
        verdict: not the dispatcher's, not the judge's.  An unstored record,
        or any record while a test pins the clock, goes by the times written.
        """
        value = self.last_ping.value
        if not in_database(self):
            return max(filter(None, [value, self.activated]), default=None)
        times = [commit_time(self.last_ping)]
        if self.activated is not None and (value is None or self.activated > value):
            times.append(commit_time(self))  # activated, and not pinged since (older versions)
        return max(filter(None, times), default=None)

    def dead_at(self, now: datetime.datetime) -> bool:
        """True if the last sign of life is more than ``ping_death_interval`` before ``now``."""
        reference = self.last_alive()
        return reference is not None and reference + self.ping_death_interval < now

    @property
    def dead(self) -> bool:
        """Dead as of this process's clock (see :meth:`dead_at`); verdicts use view times."""
        return self.dead_at(clock.utcnow())

    def beat(self) -> None:
        """Record a ping now, if the last is at least ``ping_interval`` old (to spare writes)."""
        now = clock.utcnow()
        last = self.last_ping.value
        # A ping from the future was written by another estimate of the time (an
        # earlier run, or this one before it measured its clock): renew it.
        if last is None or last + self.ping_interval <= now or last > now:
            self.last_ping.value = now

    def hold_liveness(self) -> None:
        """Make this transaction's commit fail with a conflict if this dispatcher pings meanwhile.

        A verdict of death rests on a view of the database that may be old
        (the judge was frozen, or busy): it must not commit if the dispatcher
        has pinged since.
        """
        ping = self.last_ping
        if getattr(ping, "_p_jar", None) is not None:
            ping._p_activate()
            ping._p_jar.readCurrent(ping)

    def activate(self) -> None:
        """Mark this dispatcher active; ValueError if it already is.

        The activation counts as a ping: its commit is the first sign of life.
        """
        if self.activated:
            raise AlreadyActivatedError(
                f"Already activated (dispatcher {self.UUID}, at {self.activated}): deactivate it "
                "first, or give this process its own UUID",
                queue=self.parent,
            )
        self.activated = self.last_ping.value = clock.utcnow()
        if self.thread_deaths:
            self.thread_deaths = 0
        zope.event.notify(DispatcherActivated(self))

    def deactivate(self) -> None:
        """Mark inactive and hand every held job back to the queue."""
        if not self.activated:
            raise NotActivatedError(
                f"Not activated (dispatcher {self.UUID}): activate it before deactivating",
                queue=self.parent,
            )
        self.activated = None
        queue = self.parent
        for agent in self.values():
            for job in list(agent):
                bad = unsound(job)
                if bad is not None:  # handing it back would fail, and this with it
                    agent.drop(job)
                    queue.quarantine(*bad)
                    continue
                agent.remove(job)
                self._hand_back(queue, agent, job)
        zope.event.notify(DispatcherDeactivated(self))

    def _hand_back(self, queue: Any, agent: Any, job: Any) -> None:
        status = job.status
        if status in (PENDING, ASSIGNED):
            events_log.warning("%r had unexpected status %s; treating it as new", job, status)
            status = NEW
        if status == NEW:
            queue.put(job)
        elif status in (ACTIVE, CALLBACKS):
            method = job.handleInterrupt if status == ACTIVE else job.resumeCallbacks
            queue.put(
                method,
                retry_policy_factory=RetryCommonForever,
                failure_log_level=logging.CRITICAL,
            )
        elif status == COMPLETED:
            # Normal: a dispatcher files its completed jobs at its next poll.
            agent.completed.add(job)

    def __repr__(self) -> str:
        state = "active" if self.activated else "inactive"
        return f"<DispatcherAgents {self.UUID} {state} agents={self.keys()}>"


@implementer(IDispatchers)
class Dispatchers(MappingBase):
    """The DispatcherAgents of a queue, keyed and sorted by UUID."""

    def __init__(self, queue: Any = None) -> None:
        self.parent = queue
        self._data = OOBTree()

    def register(self, uuid: uuid_module.UUID) -> DispatcherAgents:
        """Add and return a DispatcherAgents for ``uuid``; ValueError if present."""
        if not isinstance(uuid, uuid_module.UUID):
            raise TypeError(f"a dispatcher is registered by uuid.UUID, not {uuid!r}")
        if uuid in self._data:
            raise AlreadyRegisteredError(
                f"UUID already registered: {uuid}; give each worker process its own UUID, "
                "or unregister the old one first",
                queue=self.parent,
            )
        da = DispatcherAgents(uuid)
        da.parent = self.parent
        self._data[uuid] = da
        zope.event.notify(DispatcherRegistered(da))
        return da

    def unregister(self, uuid: uuid_module.UUID) -> DispatcherAgents:
        """Remove and return an inactive DispatcherAgents; see IDispatchers."""
        da: DispatcherAgents = self[uuid]
        if da.activated:
            raise AlreadyActivatedError(
                f"UUID is activated. Deactivate dispatcher {uuid} before unregistering it.",
                queue=self.parent,
            )
        del self._data[uuid]
        da.parent = None
        zope.event.notify(DispatcherUnregistered(da))
        return da

    def ping(self, uuid: uuid_module.UUID) -> None:
        """Record a ping and deactivate the next activated sibling if it is dead.

        Death is judged at the time of the newest commit this transaction
        sees, not by this process's clock: a view that is old (this process
        was frozen after taking it) shows no sibling dead that was alive
        then, and the verdict's commit fails if the sibling pinged since.
        """
        da = self[uuid]
        if not da.activated:
            raise NotActivatedError(
                f"UUID is not activated. Activate dispatcher {uuid} before it pings.",
                queue=self.parent,
            )
        da.beat()
        sibling = self._next_activated(uuid)
        if sibling is None or sibling is da:
            return
        now = self._judging_time(da)
        if now is not None and sibling.dead_at(now):
            verdict = f"{sibling!r} is dead; deactivating it (seen by {uuid})"
            sibling.hold_liveness()
            sibling.deactivate()
            self._log_once_committed(verdict)

    def _log_once_committed(self, message: str) -> None:
        """Log a verdict when its transaction commits: a commit that conflicts (the sibling
        pinged since) is no verdict, and an operator must not read one."""
        jar = self._p_jar
        if jar is None:
            events_log.warning("%s", message)
            return

        def log_if_committed(committed: bool) -> None:
            if committed:
                events_log.warning("%s", message)

        jar.transaction_manager.get().addAfterCommitHook(log_if_committed)

    def _judging_time(self, judge: DispatcherAgents) -> datetime.datetime | None:
        """ "Now" for verdicts on siblings: the newest commit in view (the database's time)."""
        if not in_database(self):
            return clock.utcnow()
        times = [view_time(self._p_jar), commit_time(judge.last_ping)]
        return max(filter(None, times), default=None)

    def _next_activated(self, uuid: uuid_module.UUID) -> Any:
        for candidate in self._data.values(min=uuid, excludemin=True):
            if candidate.activated:
                return candidate
        for candidate in self._data.values(max=uuid, excludemax=True):
            if candidate.activated:
                return candidate
        return None

    def _accepts(self, key: object) -> bool:
        return isinstance(key, uuid_module.UUID)
