"""Agents: a dispatcher's claim on a queue, holding the jobs it runs.

An agent belongs to one dispatcher (one worker process) in one queue.  Its
``size`` bounds how many jobs it holds at once and its ``filter`` decides
which jobs it takes, so a deployment decides per process what runs where.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from typing import Any

from BTrees.LOBTree import LOBTree
from zope.interface import implementer

from zasync.errors import NotHereError
from zasync.interfaces import IAgent
from zasync.model._base import Base, check_size, check_threads
from zasync.model.completed import DEFAULT_RETENTION, CompletedCollection, dt_to_long, long_to_dt
from zasync.model.job import Job
from zasync.model.lanes import Lanes

#: Every agent's held jobs keep this key first, for ever, so that a job's
#: result commit (which removes it, often the first) merges with the claims
#: that add jobs to the same bucket: BTrees refuse to merge a change that
#: deletes a bucket's first key or empties it.
_KEEP_FIRST = 0  # job keys are a sequence from 1

__all__ = ["Agent", "choose_first", "dt_to_long", "long_to_dt"]


def choose_first(agent: Agent, lane: Lanes = None) -> Any:
    """The default chooser: the first job of the queue that the agent's filter accepts."""
    taken = agent.queue.claim_batch(1, agent.filter, lane, claimer=_claimer(agent))
    return taken[0] if taken else None


def _claimer(agent: Agent) -> Any:
    """The UUID of the dispatcher ``agent`` claims for (None for an agent in no record)."""
    return getattr(agent.parent, "UUID", None)


@implementer(IAgent)
class Agent(Base):
    """Claims up to ``size`` jobs that ``filter`` accepts; see IAgent.

    ``threads`` is how many of them a dispatcher runs at once (default:
    ``size``).  A ``size`` above ``threads`` lets the dispatcher claim jobs
    ahead, in batches, which saves commits when jobs are short.
    """

    name: str | None = None
    _threads: int | None = None
    _waiting: LOBTree | None = None  # parked jobs, see park()

    def __init__(
        self,
        size: int = 3,
        filter: Callable[[Any], bool] | None = None,
        chooser: Callable[[Agent], Any] | None = None,
        retention: datetime.timedelta = DEFAULT_RETENTION,
        threads: int | None = None,
    ) -> None:
        self.size = size
        self.threads = threads
        self.filter = filter
        self.chooser = chooser
        self._jobs = LOBTree({_KEEP_FIRST: None})
        self._sequence = 0
        self.completed = CompletedCollection(retention)
        self.completed.parent = self

    @property
    def size(self) -> int:
        return self._size

    @size.setter
    def size(self, value: int) -> None:
        self._size = check_size(value, "agent")

    @property
    def threads(self) -> int:
        return self._size if self._threads is None else min(self._threads, self._size)

    @threads.setter
    def threads(self, value: int | None) -> None:
        self._threads = None if value is None else check_threads(value)

    @property
    def queue(self) -> Any:
        return None if self.parent is None else self.parent.parent

    def claimJob(self, lane: Lanes = None) -> Job[Any] | None:
        """Claim one job if there is room; return it (ASSIGNED) or None.

        ``lane`` is passed to the default chooser (see ``Queue.claim``).
        """
        if len(self) >= self._size:
            return None
        job: Job[Any] | None = (
            self.chooser(self) if self.chooser is not None else choose_first(self, lane)
        )
        if job is not None:
            self._hold(job)
        return job

    claim_job = claimJob

    def claim_jobs(self, lane: Lanes = None, careful: bool = False) -> list[Job[Any]]:
        """Claim jobs up to the free room, in one scan of the queue; return them.

        ``careful`` checks that each job's state can be stored (see
        ``Queue.claim_batch``), after a claim's commit failed.
        """
        room = self._size - len(self)
        claimed: list[Job[Any]] = []
        if room <= 0:
            return claimed
        if self.chooser is not None:
            while (job := self.claimJob()) is not None:
                claimed.append(job)
            return claimed
        claimed = self.queue.claim_batch(room, self.filter, lane, careful, _claimer(self))
        for job in claimed:
            self._hold(job)
        return claimed

    def _hold(self, job: Job[Any]) -> None:
        if _KEEP_FIRST not in self._jobs:  # an agent made before it was kept
            self._jobs[_KEEP_FIRST] = None
        self._sequence += 1
        self._jobs[self._sequence] = job
        job.parent = self

    def newest_claim(self) -> int | None:
        """When the newest held job was claimed (its start stamp, µs), or None."""
        try:
            last = self._jobs.maxKey()
        except ValueError:  # empty: an agent made before the first key was kept
            return None
        if last == _KEEP_FIRST:
            return None
        stamp = self._jobs[last].active_start_us
        return None if stamp is None else int(stamp)

    def _held(self) -> Any:
        """The held jobs' ``(key, job)`` pairs, in claim order."""
        return self._jobs.items(_KEEP_FIRST + 1)

    def _key_of(self, job: Job[Any]) -> int:
        for key, held in self._held():
            if held is job:
                return int(key)
        raise NotHereError(f"{job!r} not in Agent {self.name!r}", job=job, queue=self.queue)

    def index(self, job: Job[Any]) -> int:
        """Position of ``job`` (by identity); ValueError if absent."""
        for position, (_key, held) in enumerate(self._held()):
            if held is job:
                return position
        raise NotHereError(f"{job!r} not in Agent {self.name!r}", job=job, queue=self.queue)

    def pull(self, index: int = 0) -> Job[Any]:
        """Remove and return the job at ``index``; its parent becomes None."""
        keys = [key for key, _job in self._held()]
        key = keys[index]  # IndexError when empty or out of range
        job: Job[Any] = self._jobs.pop(key)
        job.parent = None
        return job

    def remove(self, job: Job[Any]) -> None:
        """Remove ``job``; ValueError if it is not here."""
        del self._jobs[self._key_of(job)]
        job.parent = None

    def drop(self, job: Job[Any]) -> bool:
        """Forget a held or parked job without loading or writing it; False if absent.

        For jobs that cannot be loaded or stored (see :mod:`zasync.model.quarantine`):
        unlike :meth:`remove`, the job's ``parent`` is left as it is.
        """
        for tree in (self._jobs, self._waiting):
            key = None if tree is None else next((k for k, j in tree.items() if j is job), None)
            if tree is not None and key is not None:
                del tree[key]
                return True
        return False

    def __delitem__(self, index: int) -> None:
        self.pull(index)

    def park(self, job: Job[Any]) -> None:
        """Move a job that waits for another job out of the agent's slots.

        Nothing runs for a parked job: it finishes when the job it waits for
        calls it back.  So it takes no slot (a job waiting for jobs it put
        cannot block them), and a dead dispatcher's deactivation leaves it
        alone rather than treating it as interrupted.
        """
        key = self._key_of(job)
        del self._jobs[key]
        if self._waiting is None:
            self._waiting = LOBTree()
        self._waiting[key] = job

    def is_parked(self, job: Job[Any]) -> bool:
        """True if ``job`` is parked here."""
        return self._waiting is not None and any(j is job for j in self._waiting.values())

    def parked(self) -> list[Job[Any]]:
        """The parked jobs."""
        return [] if self._waiting is None else list(self._waiting.values())

    def jobCompleted(self, job: Job[Any]) -> None:
        """Move a COMPLETED job (held or parked) to the completed collection."""
        if self._waiting is not None:
            for key, parked in self._waiting.items():
                if parked is job:
                    del self._waiting[key]
                    self.completed.add(job)
                    return
        # The job's parent stays this agent (the completed collection's
        # parent), so filing writes the agent's records but not the job.
        del self._jobs[self._key_of(job)]
        self.completed.add(job)

    job_completed = jobCompleted

    def __len__(self) -> int:
        return sum(1 for _ in self._held())

    def __bool__(self) -> bool:
        return any(True for _ in self._held())

    def __iter__(self) -> Iterator[Job[Any]]:
        return iter([job for _key, job in self._held()])

    def __getitem__(self, index: int) -> Job[Any]:
        held: list[Job[Any]] = [job for _key, job in self._held()]
        return held[index]

    def __repr__(self) -> str:
        return f"<Agent {self.name!r} size={self._size} holding={len(self)}>"
