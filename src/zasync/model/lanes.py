"""Lanes: how claimers working side by side keep out of each other's way.

A queue keeps its pending jobs in a few lanes (see :mod:`zasync.model.queue`), a
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

import itertools
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from BTrees.OOBTree import OOBTree, OOBucket
from ZODB.ConflictResolution import PersistentReference
from ZODB.POSException import BTreesConflictError

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


#: A claimer's own lanes: one lane number, a set of them, a Share, or None (none).
Lanes = int | frozenset[int] | Share | None


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


# -- the lanes' trees -----------------------------------------------------------
#
# A lane is a BTree whose head claimers empty while putters fill its tail.
# ZODB's BTrees merge concurrent changes to one bucket, but not to a tree
# node (the object that lists a tree's buckets and its first bucket), nor to
# a bucket one of the two split.  A batch of puts splits the last bucket of
# every lane again and again, and claims drop emptied buckets at the head,
# so without help nearly every batch committed while workers claim conflicts.
# The two classes below merge exactly those changes: changes at both ends of
# a tree node that an unchanged child keeps apart, and a split bucket with
# changes the other transaction made below the split.  Anything else still
# conflicts, as with plain BTrees.


def _same_ref(a: Any, b: Any) -> bool:
    """Whether two children in conflict-resolution states are the same object.

    ZODB hands references as ``PersistentReference`` objects, which refuse
    to compare when they differ; so compare their oids.
    """
    if a is b:
        return True
    if isinstance(a, PersistentReference) and isinstance(b, PersistentReference):
        return (
            not a.weak
            and not b.weak
            and a.oid is not None
            and (a.oid, a.database_name) == (b.oid, b.database_name)
        )
    return False


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, PersistentReference) or isinstance(b, PersistentReference):
        return _same_ref(a, b)
    return bool(a == b)


_Pair = tuple[Any, Any]  # (separator key, or None for the first child; child)


def _pairs(data: tuple[Any, ...]) -> list[_Pair]:
    """A node's ``(child0, key1, child1, ...)`` as ``[(None, child0), (key1, child1), ...]``."""
    return [(None, data[0])] + [(data[i], data[i + 1]) for i in range(1, len(data), 2)]


def _flat(pairs: list[_Pair]) -> tuple[Any, ...]:
    return (pairs[0][1], *(item for key, child in pairs[1:] for item in (key, child)))


def _same_pair(a: _Pair, b: _Pair) -> bool:
    return (a[0] is None) == (b[0] is None) and a[0] == b[0] and _same_ref(a[1], b[1])


def _changed_span(old: list[_Pair], side: list[_Pair], head: bool) -> tuple[int, int] | None:
    """The span ``[start, end)`` of ``old`` that ``side`` replaced; None if it changed nothing.

    ``head``: the side also changed the node's first bucket, so its span
    includes the first child.
    """
    shorter = min(len(old), len(side))
    prefix = 0
    while prefix < shorter and _same_pair(old[prefix], side[prefix]):
        prefix += 1
    if prefix == len(old) == len(side):  # the children did not change
        # Only the first bucket, under the first child: a change of that child conflicts.
        return (0, 0) if head else None
    suffix = 0
    while suffix < shorter - prefix and _same_pair(old[-1 - suffix], side[-1 - suffix]):
        suffix += 1
    end = len(old) - suffix
    return (0, max(end, 1)) if head else (prefix, end)


def _replacement(old: list[_Pair], side: list[_Pair], span: tuple[int, int]) -> list[_Pair]:
    """What ``side`` has in place of ``old[start:end]``."""
    start, end = span
    return side[start : len(side) - (len(old) - end)]


def merge_tree_states(old: Any, committed: Any, new: Any) -> Any:
    """Merge two transactions' changes to one node of a lane's tree, or raise a conflict.

    Each state is ``(children and separator keys, first bucket)``.  The
    merge succeeds when the two changed spans of the node are apart (at
    least one unchanged child between them) and at most one changed the
    first bucket; the result has each side's span in place.  The buckets
    themselves are merged (or not) on their own.
    """
    if not all(isinstance(s, tuple) and len(s) == 2 for s in (old, committed, new)):
        raise BTreesConflictError(-1, -1, -1, 11)
    base = _pairs(old[0])
    sides = []
    for state in (committed, new):
        pairs = _pairs(state[0])
        span = _changed_span(base, pairs, head=not _same_ref(state[1], old[1]))
        if span is not None:
            sides.append((span, _replacement(base, pairs, span), state))
    if len(sides) < 2:  # one side changed nothing after all: the other's state stands
        return sides[0][2] if sides else new
    (first, first_part, first_state), (second, second_part, _) = sorted(
        sides, key=lambda side: side[0]
    )
    if first[1] >= second[0]:
        raise BTreesConflictError(-1, -1, -1, 11)  # the spans touch: not provably apart
    merged = base[: first[0]] + first_part + base[first[1] : second[0]] + second_part
    merged += base[second[1] :]
    keys = [key for key, _child in merged[1:]]
    if not merged or merged[0][0] is not None or any(a >= b for a, b in itertools.pairwise(keys)):
        raise BTreesConflictError(-1, -1, -1, 11)
    # Only the span at the head can have changed the first bucket.
    return (_flat(merged), first_state[1])


def _items(flat: tuple[Any, ...]) -> dict[Any, Any]:
    """A bucket's ``(key0, value0, key1, ...)`` as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def merge_split_bucket(old: Any, committed: Any, new: Any, merge: Any) -> Any:
    """Merge a bucket one transaction split (its next bucket changed) with the other's changes.

    The splitting side kept the bucket's lower keys and moved the others to
    a new bucket only it knows.  The other side's changes merge if they all
    lie at or below the highest key the splitting side kept; ``merge`` (the
    plain bucket merge) then does the rest.
    """
    nexts = [s[1] if isinstance(s, tuple) and len(s) > 1 else None for s in (old, committed, new)]
    committed_split = not _same_ref(nexts[1], nexts[0])
    new_split = not _same_ref(nexts[2], nexts[0])
    if committed_split == new_split or old is None:
        raise BTreesConflictError(-1, -1, -1, 0)
    split, other = (committed, new) if committed_split else (new, committed)
    kept = split[0]
    if not kept or other is None or not other[0]:
        raise BTreesConflictError(-1, -1, -1, 0)
    highest = kept[-2]
    before = _items(old[0])
    after = _items(other[0])
    touched = list(before.keys() ^ after.keys())
    touched += [k for k in before.keys() & after.keys() if not _same_value(before[k], after[k])]
    if any(key > highest for key in touched):
        raise BTreesConflictError(-1, -1, -1, 0)
    follow = split[1:]  # the splitting side's next bucket, if any, for all three
    states = [(old[0], *follow), (other[0], *follow), split]
    if committed_split:
        states[1], states[2] = split, states[1]
    return merge(*states)


class LaneBucket(OOBucket):  # type: ignore[misc]
    """A bucket of a :class:`Lane`: it also merges with a split of itself at its tail."""

    def _p_resolveConflict(self, old: Any, committed: Any, new: Any) -> Any:
        try:
            return super()._p_resolveConflict(old, committed, new)
        except BTreesConflictError as error:
            if error.reason != 0:  # not a changed next bucket: nothing more to merge
                raise
            return merge_split_bucket(old, committed, new, super()._p_resolveConflict)


class Lane(OOBTree):  # type: ignore[misc]
    """A lane of pending jobs: an OOBTree whose head and tail can change at once.

    Its nodes merge a claim's change at the head with a put's at the tail
    (see :func:`merge_tree_states`), its buckets a split at the tail with
    claims below it (see :func:`merge_split_bucket`).  The tree and its
    buckets are stored as ``zasync.model.lanes.Lane`` and
    ``zasync.model.lanes.LaneBucket``.
    """

    _bucket_type = LaneBucket
    _p_changed: bool | None  # persistent's, declared for the type checker

    @classmethod
    def new(cls, entries: dict[Any, Any]) -> Lane:
        """A lane holding ``entries``, with a root above a node above its buckets from the start.

        A root that splits into a node of nodes is a change no merge can
        undo, so every lane starts with its two levels: it then grows at
        its tail only (:func:`merge_tree_states` merges that), and a third
        level comes after millions of jobs.
        """
        bucket = LaneBucket(entries)
        node = cls()
        node.__setstate__(((bucket,), bucket))
        lane = cls()
        lane.__setstate__(((node,), bucket))
        return lane

    def hold_root(self) -> None:
        """Store the root of a lane of several levels in this transaction, changed or not.

        Each insert or delete reads the nodes it passes through, and ZODB
        checks at commit that they did not change meanwhile (BTrees'
        ``readCurrent``): a check that no conflict resolution can answer,
        and claims change the root each time they drop the lane's first
        bucket.  A root the transaction stores is merged instead
        (:func:`merge_tree_states`), and is small (a few children).  A tree
        of one level (a lane made otherwise than by :meth:`new`) is left
        alone: its root has up to hundreds of children.
        """
        if self._p_changed or self._p_jar is None:
            return
        state = self.__getstate__()
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0][0], Lane):
            self._p_changed = True

    def __getstate__(self) -> Any:
        """The node's state, its only bucket always a record of its own.

        BTrees pickles the only bucket of a node inside the node while that
        bucket has no oid yet: right for a tree's root, whose bucket nothing
        else refers to, but a lane's inner node's bucket is also the root's
        first bucket or the next one of the bucket before.  When a
        transaction leaves such a node with one bucket it made (a claim
        empties the first bucket, put-backs split the last, a claim takes all
        but the new bucket) and ZODB pickles the node before the objects that
        refer to that bucket, the bucket is stored twice, inside the node and
        on its own, and the two copies part: jobs claimed stay in one, jobs
        put later go to the other, which a scan from an earlier bucket never
        reaches.  A state that refers to the bucket gives it an oid when
        pickled, as any new object gets; so does a root of one bucket (a
        record more, and its bucket then merges on its own).
        """
        state = super().__getstate__()
        if isinstance(state, tuple) and len(state) == 1:
            bucket = self._firstbucket  # a node of one bucket: that bucket
            return ((bucket,), bucket)
        return state

    def _p_resolveConflict(self, old: Any, committed: Any, new: Any) -> Any:
        if all(isinstance(s, tuple) and len(s) == 2 for s in (old, committed, new)):
            return merge_tree_states(old, committed, new)
        return super()._p_resolveConflict(old, committed, new)
