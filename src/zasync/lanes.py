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
  it is full of slow jobs, or its filter refuses the job, or the job has
  waited :data:`HANDOFF` without it being taken (a dispatcher stuck or dead
  but not yet known to be).
* A dispatcher out of work helps an owner that is full but claiming from the
  other end of its lanes: half of the newest due jobs beyond the next few.
  The owner's claims at the head and the helper's at the tail then stay
  buckets apart, and conflicts (one claim retried) stay rare.
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

    def may_take(self, lane: int, key: Any, job: Any, now: int) -> bool:
        """May the claimer take ``job`` (queue key ``key``) from ``lane``, not its own?"""
        return True

    def helps_from_tail(self, lane: int, now: int) -> bool:
        """Whether the claimer should take ``lane``'s newest due jobs, once out of others."""
        return False

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
    """The share of one of several active dispatchers of a queue.

    ``active`` lists the queue's active dispatchers' records (their agents
    in the queue), in the order they all agree on (their UUIDs'), and
    ``index`` is this dispatcher's place in it.  With ``n`` of them, lane
    ``L`` belongs to dispatcher ``L % n``; its rotation goes on from there.
    With more dispatchers than lanes, the extra ones own no lane and help
    when the owners are full.

    A job in a lane that is not this dispatcher's is left to a dispatcher
    ahead of it in the rotation that accepts the job (its agents' filters)
    and has room for it (for up to :data:`HANDOFF`), or is full but claimed
    lately (it takes its lanes' next jobs as its jobs finish).  When all the
    dispatchers ahead in a lane are full but claiming, this one helps from
    the lane's other end (:meth:`helps_from_tail`): it takes half of the
    newest due jobs beyond the next few while they take the oldest, so the
    two rarely meet in one bucket.
    """

    def __init__(self, active: Sequence[Any], index: int, lanes: int) -> None:
        count = len(active)
        super().__init__(lane for lane in range(lanes) if lane % count == index)
        self._active = active
        self._index = index
        self._count = count
        self._rooms: dict[int, int] = {}
        self._lately: dict[int, bool] = {}

    def _ahead(self, lane: int) -> list[Any]:
        """The dispatchers before this one in ``lane``'s rotation."""
        start = lane % self._count
        steps = (self._index - start) % self._count
        return [self._active[(start + step) % self._count] for step in range(steps)]

    def may_take(self, lane: int, key: Any, job: Any, now: int) -> bool:
        return not any(self._leave_to(other, job, key, now) for other in self._ahead(lane))

    def helps_from_tail(self, lane: int, now: int) -> bool:
        ahead = self._ahead(lane)
        return bool(ahead) and all(self._busy_claiming(other, now) for other in ahead)

    def _leave_to(self, dispatcher_agents: Any, job: Any, key: Any, now: int) -> bool:
        """Whether to leave ``job`` to ``dispatcher_agents``, ahead of this one in its lane."""
        accepting = [agent for agent in dispatcher_agents.values() if _accepts(agent, job)]
        if not accepting:
            return False
        if any(self._room(agent) > 0 for agent in accepting):
            return bool(now - key[1] < HANDOFF)  # it takes it now, unless it left it too long
        return self._claimed_lately(dispatcher_agents, now)

    def _busy_claiming(self, dispatcher_agents: Any, now: int) -> bool:
        """Full in every agent, yet claiming: it will take its lanes' oldest jobs next."""
        full = all(self._room(agent) <= 0 for agent in dispatcher_agents.values())
        return full and self._claimed_lately(dispatcher_agents, now)

    def _room(self, agent: Any) -> int:
        """Free slots of another dispatcher's agent (a job's result commit frees its slot)."""
        key = id(agent)
        if key not in self._rooms:
            self._rooms[key] = agent.size - len(agent)
        return self._rooms[key]

    def _claimed_lately(self, dispatcher_agents: Any, now: int) -> bool:
        """The dispatcher claimed a job less than :data:`HANDOFF` ago (its newest held one)."""
        key = id(dispatcher_agents)
        if key not in self._lately:
            starts = [agent.newest_claim() for agent in dispatcher_agents.values()]
            self._lately[key] = any(s is not None and now - s < HANDOFF for s in starts)
        return self._lately[key]


def _accepts(agent: Any, job: Any) -> bool:
    """Whether another dispatcher's agent would take ``job`` (its filter, if it can run here)."""
    if agent.chooser is not None or agent.filter is None:
        return True
    try:
        return bool(agent.filter(job))
    except Exception:
        # Its filter cannot run here (not importable, say): do not leave the
        # job to it; a claim that meets its own claim is merely retried.
        _log.debug("cannot evaluate %r's filter for %r", agent, job, exc_info=True)
        return False
