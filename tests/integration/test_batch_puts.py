"""Batches of puts while claims go on: real concurrent transactions on a FileStorage.

A batch of 1,000 puts (one transaction) splits the last bucket of every lane
many times while claims empty buckets at the lanes' heads; the lanes' trees
must merge the two (zasync.model.lanes.Lane).  Also the merges' own rules, and the
upgrade of lanes made as plain OOBTrees.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import transaction
import ZODB
from BTrees import check as btrees_check
from BTrees.OOBTree import OOBTree, OOBucket
from ZODB.FileStorage import FileStorage
from ZODB.POSException import BTreesConflictError, ConflictError

import zasync
from zasync.model.lanes import Lane, LaneBucket, merge_split_bucket, merge_tree_states
from zasync.model.queue import _KEEP_FIRST, upgrade_lanes

import support

BATCH = 1000
ROUNDS = 12


@pytest.fixture
def file_db(tmp_path: Any) -> Iterator[ZODB.DB]:
    db = ZODB.DB(FileStorage(str(tmp_path / "Data.fs")))
    conn = db.open()
    zasync.install_queues(conn)
    transaction.commit()
    conn.close()
    yield db
    db.close()


def opened(db: ZODB.DB) -> tuple[Any, Any]:
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    tm.begin()
    return tm, zasync.get_queue(conn)


def put_batch(queue: Any) -> list[Any]:
    return [queue.put(support.mock_work) for _ in range(BATCH)]


# BTrees.check knows the BTrees classes by exact type: a lane is checked as an OOBTree.
btrees_check._type2kind.setdefault(Lane, btrees_check._type2kind[OOBTree])
btrees_check._type2kind.setdefault(LaneBucket, btrees_check._type2kind[OOBucket])
btrees_check._btree2bucket.setdefault(Lane, OOBucket)  # a lane of one bucket, inline


def check_lanes(queue: Any) -> None:
    for lane in queue._lanes:
        btrees_check.check(lane)  # the merged trees are sound: every key in its bucket's range
        lane._check()


def test_batches_merge_with_claims_committed_meanwhile(file_db):
    putter_tm, putter = opened(file_db)
    claimer_tm, claimer = opened(file_db)
    for tm, queue in ((putter_tm, putter), (putter_tm, putter)):  # a backlog to claim from
        put_batch(queue)
        tm.commit()
    put_conflicts = claim_conflicts = 0
    put_oids = set()
    claimed = []
    for round_ in range(ROUNDS):
        putter_tm.begin()
        claimer_tm.begin()
        jobs = put_batch(putter)
        taken = claimer.claim_batch(60)  # empties the first buckets of the lanes
        assert len(taken) == 60
        # Each order: the claims commit while the batch is open, and the other way round.
        first, second = (claimer_tm, putter_tm) if round_ % 2 else (putter_tm, claimer_tm)
        first.commit()
        try:
            second.commit()
        except ConflictError:
            second.abort()
            if second is putter_tm:
                put_conflicts += 1
            else:
                claim_conflicts += 1
            continue
        put_oids.update(job._p_oid for job in jobs)
        claimed.extend(job._p_oid for job in taken)
    assert put_conflicts == 0
    # A claim that committed second may still meet a read conflict: while a lane
    # has one inner node, the claims read the node that the batch's splits change.
    assert claim_conflicts <= ROUNDS // 4
    putter_tm.begin()
    check_lanes(putter)
    pending = [job._p_oid for job in putter]
    assert len(pending) == len(putter) == 2 * BATCH + ROUNDS * BATCH - len(claimed)
    assert put_oids <= set(pending) | set(claimed)
    assert not set(pending) & set(claimed)
    keys = [job._queue_key for job in putter]
    assert keys == sorted(keys)  # claim order kept (spec Q-9)


def test_claims_still_take_the_oldest_due_jobs_first(file_db):
    tm, queue = opened(file_db)
    first = put_batch(queue)
    tm.commit()
    second = put_batch(queue)
    tm.commit()
    taken = queue.claim_batch(BATCH)
    tm.commit()
    assert {job._p_oid for job in taken} == {job._p_oid for job in first}
    assert [job._p_oid for job in queue] == [job._p_oid for job in second]
    check_lanes(queue)


# -- the merge rules ----------------------------------------------------------------


class Ref:
    """A stand-in for a child in a conflict-resolution state (compared by identity)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def node(children: list[Any], keys: list[int], first: Any) -> tuple[Any, Any]:
    data = [children[0]]
    for key, child in zip(keys, children[1:], strict=True):
        data += [key, child]
    return (tuple(data), first)


def test_a_node_merges_a_head_change_with_a_tail_change():
    b = [Ref(f"b{i}") for i in range(6)]
    old = node(b[:5], [10, 20, 30, 40], b[0])
    head = node(b[1:5], [20, 30, 40], b[1])  # the first bucket emptied and dropped
    tail = node([*b[:5], b[5]], [10, 20, 30, 40, 50], b[0])  # the last bucket split
    expected = node(b[1:6], [20, 30, 40, 50], b[1])
    assert merge_tree_states(old, head, tail) == expected
    assert merge_tree_states(old, tail, head) == expected


def test_a_node_merges_a_first_bucket_change_below_its_first_child():
    n = [Ref(f"n{i}") for i in range(3)]
    first, later = Ref("first"), Ref("later")
    old = node(n[:2], [100], first)
    assert merge_tree_states(old, node(n[:2], [100], later), node(n, [100, 200], first)) == (
        node(n, [100, 200], later)
    )


def test_a_node_refuses_changes_that_are_not_apart():
    b = [Ref(f"b{i}") for i in range(5)]
    old = node(b, [10, 20, 30, 40], b[0])
    head = node(b[1:], [20, 30, 40], b[1])  # b0 dropped: b1 lost its key too
    touching = node(b, [10, 25, 30, 40], b[0])  # b2's key changed, next to that
    for committed, new in ((head, touching), (touching, node(b, [10, 22, 30, 40], b[0]))):
        with pytest.raises(BTreesConflictError):
            merge_tree_states(old, committed, new)
    apart = node(b, [10, 20, 30, 45], b[0])
    assert merge_tree_states(old, head, apart) == node(b[1:], [20, 30, 45], b[1])


def test_a_node_refuses_two_new_first_buckets():
    b = [Ref(f"b{i}") for i in range(5)]
    old = node(b, [10, 20, 30, 40], b[0])
    with pytest.raises(BTreesConflictError):
        merge_tree_states(old, node(b[1:], [20, 30, 40], b[1]), node(b[2:], [30, 40], b[2]))


def bucket(keys: list[int], following: Any = None) -> tuple[Any, ...]:
    items = tuple(item for key in keys for item in (key, f"v{key}"))
    return (items,) if following is None else (items, following)


def plain_merge(old: Any, committed: Any, new: Any) -> Any:
    return LaneBucket()._p_resolveConflict(old, committed, new)


def test_a_split_bucket_merges_with_claims_below_the_split():
    after, split_off = Ref("after"), Ref("split off")
    old = bucket([1, 2, 3, 4, 5, 6], after)
    claimed = bucket([1, 4, 5, 6], after)  # 2 and 3 claimed
    split = bucket([1, 2, 3, 4], split_off)  # 5, 6 (and the batch) moved to a new bucket
    assert merge_split_bucket(old, claimed, split, plain_merge) == bucket([1, 4], split_off)
    assert merge_split_bucket(old, split, claimed, plain_merge) == bucket([1, 4], split_off)
    assert plain_merge(old, claimed, split) == bucket([1, 4], split_off)  # as ZODB calls it


def test_a_split_bucket_refuses_changes_above_the_split():
    after, split_off = Ref("after"), Ref("split off")
    old = bucket([1, 2, 3, 4, 5, 6], after)
    split = bucket([1, 2, 3], split_off)
    with pytest.raises(BTreesConflictError):
        plain_merge(old, bucket([1, 2, 3, 4, 6], after), split)  # 5 moved, yet claimed
    with pytest.raises(BTreesConflictError):
        plain_merge(old, bucket([1, 2, 3, 4, 5, 6, 7], after), split)  # 7 would be misplaced
    with pytest.raises(BTreesConflictError):
        plain_merge(old, bucket([1, 2, 3], Ref("other split")), split)  # both split


# -- lanes made before -----------------------------------------------------------


def test_old_plain_lanes_are_upgraded_with_their_jobs_and_order(file_db):
    tm, queue = opened(file_db)
    queue._lanes = tuple(OOBTree({_KEEP_FIRST: None}) for _ in range(len(queue._lanes)))
    put_batch(queue)
    tm.commit()
    before = [(job._queue_key, job._p_oid) for job in queue]
    old_lanes = queue._lanes
    assert upgrade_lanes(queue._p_jar) == [""]
    tm.commit()
    assert all(type(lane) is Lane for lane in queue._lanes)
    assert [(job._queue_key, job._p_oid) for job in queue] == before
    assert all(len(lane) == 0 for lane in old_lanes)
    check_lanes(queue)
    assert upgrade_lanes(queue._p_jar) == []  # once done, nothing more to write
    assert queue.claim() is not None


def test_a_put_into_an_old_lane_during_the_upgrade_is_retried_not_lost(file_db):
    tm, queue = opened(file_db)
    queue._lanes = tuple(OOBTree({_KEEP_FIRST: None}) for _ in range(len(queue._lanes)))
    put_batch(queue)
    tm.commit()
    other_tm, other = opened(file_db)
    late = other.put(support.mock_work)  # into the old lanes, not committed yet
    upgrade_lanes(queue._p_jar)
    tm.commit()
    with pytest.raises(ConflictError):
        other_tm.commit()
    other_tm.abort()
    late = other.put(support.mock_work)  # the retry sees the new lanes
    other_tm.commit()
    tm.begin()
    assert late._p_oid in {job._p_oid for job in queue}


@pytest.mark.parametrize("first", ["upgrade", "put"])
def test_a_put_into_an_empty_old_lane_during_the_upgrade_is_retried_not_lost(file_db, first):
    # Lanes made before the kept first key existed are empty OOBTrees while no
    # job of theirs waits; claims and removals can still empty one entirely.
    tm, queue = opened(file_db)
    queue._lanes = tuple(OOBTree() for _ in range(len(queue._lanes)))
    tm.commit()
    tm.begin()
    other_tm, other = opened(file_db)
    late = other.put(support.mock_work)  # into an empty old lane, not committed yet
    assert upgrade_lanes(queue._p_jar) == [""]
    # Whichever commits second must conflict: else the job waits in a lane no
    # queue reaches any more (the upgrade's copy of the lanes misses it).
    second = tm if first == "put" else other_tm
    (other_tm if first == "put" else tm).commit()
    with pytest.raises(ConflictError):
        second.commit()
    second.abort()
    if second is other_tm:
        late = other.put(support.mock_work)  # the retry sees the new lanes
        other_tm.commit()
    else:
        assert upgrade_lanes(queue._p_jar) == [""]  # the retry copies the job
        tm.commit()
    tm.begin()
    assert [job._p_oid for job in queue] == [late._p_oid]
    assert len(queue) == 1
    assert all(type(lane) is Lane for lane in queue._lanes)


def test_a_node_left_with_one_new_bucket_keeps_it_as_its_own_record(file_db):
    # One transaction claims a lane's first bucket empty (the lane's node
    # changes first), puts jobs back at the head (the last bucket, now also the
    # first, splits), then claims the jobs put back: the node is left with one
    # bucket, made in this transaction.  BTrees pickles a node's only bucket
    # inside the node while that bucket has no oid, yet the root (its first
    # bucket) refers to that bucket as a record of its own: the two copies part
    # at once, and jobs are lost or claimed twice.  (A dispatcher's poll does
    # this: one agent claims, orphans of another are put back, and that agent
    # claims them.)
    tm, queue = opened(file_db)
    queue._lanes = (Lane.new({_KEEP_FIRST: None}),)
    jobs = [queue.put(support.mock_work) for _ in range(60)]  # buckets of one node
    tm.commit()
    node = queue._lanes[0].__getstate__()[0][0]
    middle = node.__getstate__()[0][2:-1:2]
    held = [queue._lanes[0][key] for bucket in middle for key in bucket]
    for job in held:
        queue.remove(job)  # claimed, then orphaned: to be put back
    tm.commit()
    assert len(node.__getstate__()[0][::2]) == 2
    first = [key for key in node.__getstate__()[1] if key != _KEEP_FIRST]
    taken = queue.claim_batch(len(first))  # empties the first bucket
    for job in held:
        queue.putBack(job)  # splits the other bucket: its jobs move to a new last one
    buckets = node.__getstate__()[0][::2]
    assert buckets[-1]._p_oid is None
    claimed = queue.claim_batch(sum(len(bucket) for bucket in buckets[:-1]))
    assert len(node.__getstate__()[0]) == 1  # one bucket, new
    left = {job._p_oid for job in queue}
    tm.commit()
    _other_tm, other = opened(file_db)
    check_lanes(other)
    assert {job._p_oid for job in other} == left
    gone = {job._p_oid for job in taken + claimed}
    assert left | gone == {job._p_oid for job in jobs}
    assert len(other) == len(left)
