"""Dispatchers sharing a queue leave each other's jobs alone while the owner can take them."""

from __future__ import annotations

import datetime
import uuid

import pytest
import transaction

from zasync import COMPLETED, Agent, clock
from zasync.model.lanes import LANES, DispatcherShare, Share, as_share, lane_of
from zasync.model.queue import LANE_WINDOW

import support


def is_even_oid(job):
    return int.from_bytes(job._p_oid, "big") % 2 == 0


def refuse_all(job):
    return False


def broken_filter(job):
    raise RuntimeError("cannot decide here")


@pytest.fixture
def three(queue):
    """Three active dispatchers with one agent of size 1 each, in UUID order."""
    records = []
    for n in range(1, 4):
        da = queue.dispatchers.register(uuid.UUID(int=n))
        da["main"] = Agent(size=1)
        da.activate()
        records.append(da)
    transaction.commit()
    return records


def share_of(queue, records, index):
    return DispatcherShare(records, index, queue.lane_count)


def jobs_in_lane(queue, lane, count):
    """Leave ``count`` pending jobs in the queue, all in ``lane``, and commit; return them."""
    kept = []
    while len(kept) < count:
        job = queue.put(support.mock_work)
        transaction.savepoint()  # gives the job its oid
        if lane_of(job._p_oid, queue.lane_count) == lane:
            kept.append(job)
    for other in [j for j in queue if all(j is not k for k in kept)]:
        queue.remove(other)
    transaction.commit()
    return kept


def only_job_in_lane(queue, lane):
    """Leave one pending job in the queue, in ``lane``, and commit; return it."""
    (job,) = jobs_in_lane(queue, lane, 1)
    return job


def test_the_lanes_are_split_by_order(queue, three):
    owned = [share_of(queue, three, i).own for i in range(3)]
    assert owned == [frozenset({0, 3, 6}), frozenset({1, 4, 7}), frozenset({2, 5})]
    assert frozenset().union(*owned) == frozenset(range(LANES))


def test_more_dispatchers_than_lanes_leave_the_extra_ones_without_a_lane(queue):
    records = [object()] * (LANES + 2)
    shares = [DispatcherShare(records, i, LANES) for i in range(LANES + 2)]
    assert [s.own for s in shares[:LANES]] == [frozenset({n}) for n in range(LANES)]
    assert shares[LANES].own == shares[LANES + 1].own == frozenset()


def test_a_job_is_left_to_its_lanes_owner_while_it_has_room(queue, three, now):
    job = only_job_in_lane(queue, 0)  # dispatcher 0's lane; 1 comes next in its rotation
    assert queue.claim(lane=share_of(queue, three, 1)) is None
    assert queue.claim(lane=share_of(queue, three, 2)) is None
    assert queue.claim(lane=share_of(queue, three, 0)) is job


def test_when_the_owner_is_full_the_next_in_rotation_takes_it(queue, three, now):
    first = only_job_in_lane(queue, 0)
    assert three[0]["main"].claim_jobs(share_of(queue, three, 0)) == [first]  # full now
    job = only_job_in_lane(queue, 0)
    # 2 comes after 1 in lane 0's rotation, and 1 has room: 2 leaves it to 1.
    assert queue.claim(lane=share_of(queue, three, 2)) is None
    assert queue.claim(lane=share_of(queue, three, 1)) is job


def test_a_full_owner_that_claims_lately_is_helped_from_the_tail(queue, three, now):
    (held,) = jobs_in_lane(queue, 0, 1)
    assert three[0]["main"].claim_jobs(share_of(queue, three, 0)) == [held]  # full now
    held._active_start = clock.to_stamp(now)  # claimed just now, as a dispatcher does
    jobs = jobs_in_lane(queue, 0, LANE_WINDOW + 4)
    # It takes its lane's oldest jobs as its own finish; the helper takes the
    # newest, half of those beyond the next LANE_WINDOW.
    helper = three[1]["main"]
    helper.size = 10
    assert helper.claim_jobs(share_of(queue, three, 1)) == jobs[-2:][::-1]
    assert queue.claim(lane=share_of(queue, three, 1)) is jobs[-3]  # half of two beyond
    assert queue.claim(lane=share_of(queue, three, 1)) is None  # the rest are the owner's
    # The one after in the rotation leaves the lane to the helper, which has room.
    assert queue.claim(lane=share_of(queue, three, 2)) is None


def test_a_full_owner_busy_for_long_gets_help_from_the_head(queue, three, now):
    (held,) = jobs_in_lane(queue, 0, 1)
    three[0]["main"].claim_jobs(share_of(queue, three, 0))
    held._active_start = clock.to_stamp(now - datetime.timedelta(seconds=5))
    first, _second = jobs_in_lane(queue, 0, 2)
    assert queue.claim(lane=share_of(queue, three, 1)) is first


def test_a_finished_job_gives_its_slot_back_at_once(queue, three, now):
    held = only_job_in_lane(queue, 0)
    three[0]["main"].claim_jobs(share_of(queue, three, 0))
    held()  # its result commit files it
    assert held.status == COMPLETED and len(three[0]["main"]) == 0
    only_job_in_lane(queue, 0)
    assert queue.claim(lane=share_of(queue, three, 1)) is None  # the owner has room again


@pytest.mark.parametrize("owner_filter", [refuse_all, broken_filter])
def test_a_job_the_owner_refuses_or_cannot_judge_goes_to_the_next(queue, three, now, owner_filter):
    three[0]["main"].filter = owner_filter
    job = only_job_in_lane(queue, 0)  # dispatcher 0's lane; 1 comes next in its rotation
    assert queue.claim(lane=share_of(queue, three, 1)) is job


def test_a_job_left_waiting_too_long_goes_to_anyone(queue, three, now):
    job = only_job_in_lane(queue, 0)  # dispatcher 0's lane; 1 comes next in its rotation
    clock.advance(datetime.timedelta(seconds=0.5))
    assert queue.claim(lane=share_of(queue, three, 2)) is None
    clock.advance(datetime.timedelta(seconds=0.5))  # the handoff: a second
    assert queue.claim(lane=share_of(queue, three, 2)) is job


def test_lane_arguments_become_shares(queue):
    assert as_share(None, 8) is None
    assert as_share(11, 8).own == frozenset({3})
    assert as_share(frozenset({1, 9}), 8).own == frozenset({1})
    share = Share({2})
    assert as_share(share, 8) is share
