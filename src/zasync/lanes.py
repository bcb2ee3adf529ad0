"""Lanes: how claimers working side by side keep out of each other's way.

A queue keeps its pending jobs in a few lanes (see :mod:`zasync.queue`), a
job's lane chosen by its oid.  Two transactions that claim the same job
conflict, and one of them is retried; two that claim different jobs merge.
So the claimers of a queue share its lanes out:

* Each claimer owns some lanes (its :class:`Share`) and takes its own lanes'
  due jobs first, in claim order.  Another lane's job comes before them only
  when it has been due :data:`OWN_LEAD` longer than the claimer's next own job:
  the order across lanes stays first-in, first-out within that lead, and no
  lane can starve.
* Several dispatchers claiming from one queue (:class:`DispatcherShare`)
  split the lanes by their order among the queue's active dispatchers, and a
  lane they do not own is left to the dispatchers ahead of them in that lane's
  rotation (its owner first, then the next one) as long as one of those has
  room for the job and its filter accepts it.  So at most one dispatcher goes
  for a given job, and the others take it only when that one cannot: when
  it is full, or its filter refuses the job, or the job has waited
  :data:`HANDOFF` without it being taken (a dispatcher stuck or dead but not
  yet known to be).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

#: How many lanes a new queue has.
LANES = 8
#: How much longer another lane's job must have been due to come before a claimer's own.
OWN_LEAD = 1_000_000  # microseconds
#: How long a job is left to a dispatcher ahead of the claimer that has room for it.
HANDOFF = 1_000_000  # microseconds

_log = logging.getLogger("zasync.events")


def lane_of(oid: bytes, lanes: int) -> int:
    """The lane of the job with this oid, in a queue of ``lanes`` lanes."""
    return int.from_bytes(oid, "big") % lanes


class Share:
    """A claimer's own lanes; it may take any other lane's jobs when its turn comes.

    This is what ``queue.claim(lane=...)`` uses: a claimer that knows
    nothing of the others.
    """

    def __init__(self, own: Iterable[int]) -> None:
        self.own = frozenset(own)

    def owns(self, lane: int) -> bool:
        """The lane is one of this claimer's own."""
        return lane in self.own

    def may_take(self, lane: int, job: Any, waited: int) -> bool:
        """May the claimer take ``job`` from ``lane`` (not its own), due ``waited`` µs ago?"""
        return True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} own={sorted(self.own)}>"


def as_share(lane: int | Iterable[int] | Share | None, lanes: int) -> Share | None:
    """A claimer's ``lane`` argument as a :class:`Share`: a lane number, several, or a share."""
    if lane is None or isinstance(lane, Share):
        return lane
    if isinstance(lane, int):
        return Share({lane % lanes})
    return Share({n % lanes for n in lane})


class DispatcherShare(Share):
    """The share of one dispatcher among the active dispatchers of a queue.

    ``active`` lists the queue's active dispatchers' records (their agents
    in the queue), in the order they all agree on (their UUIDs'), and
    ``index`` is this dispatcher's place in it.  With ``n`` of them, lane
    ``L`` belongs to dispatcher ``L % n``; its rotation goes on from there.
    With more dispatchers than lanes, the extra ones own no lane and help
    when the owners are full.
    """

    def __init__(self, active: Sequence[Any], index: int, lanes: int) -> None:
        count = len(active)
        super().__init__(lane for lane in range(lanes) if lane % count == index)
        self._active = active
        self._index = index
        self._count = count
        self._rooms: dict[int, int] = {}

    def _ahead(self, lane: int) -> list[Any]:
        """The dispatchers before this one in ``lane``'s rotation."""
        start = lane % self._count
        steps = (self._index - start) % self._count
        return [self._active[(start + step) % self._count] for step in range(steps)]

    def may_take(self, lane: int, job: Any, waited: int) -> bool:
        return not any(self._would_take(other, job, waited) for other in self._ahead(lane))

    def _would_take(self, dispatcher_agents: Any, job: Any, waited: int) -> bool:
        """``dispatcher_agents`` has room for ``job`` now and has not left it waiting long."""
        if waited >= HANDOFF:
            return False
        for agent in dispatcher_agents.values():
            if self._room(agent) <= 0:
                continue
            if agent.chooser is not None or agent.filter is None:
                return True
            try:
                if agent.filter(job):
                    return True
            except Exception:
                # Its filter cannot run here (not importable, say): do not leave
                # the job to it; a claim that meets its own is merely retried.
                _log.debug("cannot evaluate %r's filter for %r", agent, job, exc_info=True)
        return False

    def _room(self, agent: Any) -> int:
        """Free slots of another dispatcher's agent (a job's result commit frees its slot)."""
        key = id(agent)
        if key not in self._rooms:
            self._rooms[key] = agent.size - len(agent)
        return self._rooms[key]
