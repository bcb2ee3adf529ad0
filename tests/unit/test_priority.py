"""Priorities: among due jobs, the highest priority is claimed first; equal ones keep put order."""

from __future__ import annotations

import datetime
import operator
import uuid

import pytest
import transaction

import zasync
from zasync import Agent, Job
from zasync.errors import InvalidValueError
from zasync.ops import views

from support import another_connection

HOUR = datetime.timedelta(hours=1)


def put(queue, number, **options):
    return queue.put(Job(operator.add, number, 0), **options)


def claim_all(queue):
    order = []
    while (job := queue.claim()) is not None:
        order.append(job.args[0])
    return order


def test_higher_priorities_are_claimed_first_and_equal_ones_in_put_order(queue):
    for number, priority in enumerate([0, 5, -3, 5, 0, 100, -100, 0]):
        put(queue, number, priority=priority)
    transaction.commit()
    assert [job.args[0] for job in queue] == [5, 1, 3, 0, 4, 7, 2, 6]  # listing order
    assert claim_all(queue) == [5, 1, 3, 0, 4, 7, 2, 6]


def test_a_job_not_yet_due_does_not_block_lower_priorities(queue, now):
    put(queue, 1, priority=9, begin_after=now + HOUR)
    put(queue, 2)
    transaction.commit()
    assert claim_all(queue) == [2]
    assert queue.next_due_after(now) == now + HOUR  # the sleep still sees the urgent one
    zasync.set_now(now + HOUR)
    assert claim_all(queue) == [1]


def test_a_put_back_job_keeps_its_priority_and_goes_first_within_it(queue):
    low = put(queue, 1, priority=-1)
    put(queue, 2, priority=-1)
    put(queue, 3, priority=1)
    transaction.commit()
    assert queue.claim().args[0] == 3
    assert queue.claim() is low
    low._unclaim()
    queue.putBack(low)
    assert claim_all(queue) == [1, 2]


def test_priorities_cost_nothing_until_used(queue):
    put(queue, 1)
    transaction.commit()
    assert queue._bands is None and Job(operator.add).priority == 0
    put(queue, 2, priority=3)
    assert list(queue._bands.keys()) == [3]


@pytest.mark.parametrize("priority", [101, -101, 1.5, "high", True])
def test_a_bad_priority_is_refused_and_changes_nothing(queue, priority):
    job = Job(operator.add, 1, 1)
    with pytest.raises(InvalidValueError, match="from -100 to 100") as caught:
        queue.put(job, priority=priority)
    assert "\n" not in str(caught.value)
    assert len(queue) == 0 and queue._bands is None and job._p_jar is None


def test_removing_pulling_and_quarantining_find_jobs_in_any_band(conn, queue):
    a = put(queue, 1, priority=7)
    b = put(queue, 2, priority=-7)
    c = put(queue, 3, priority=7)
    transaction.commit()
    queue.remove(b)
    assert queue.pull() is a
    key = queue.pending_key(int.from_bytes(c._p_oid, "big"))
    assert key is not None and queue.pending_job(key) is c
    queue.quarantine(c, "cannot be stored", key)
    assert len(queue) == 0 and list(queue) == []
    transaction.commit()
    assert views.job_info(conn, views.job_id(a))["priority"] == 7


def test_claims_of_two_workers_in_one_band_do_not_conflict(db, queue):
    jobs = [put(queue, n, priority=4) for n in range(40)]
    transaction.commit()
    with another_connection(db) as (other, other_tm):
        mine = queue.claim_batch(5, lane=0)
        theirs = zasync.get_queue(other).claim_batch(5, lane=4)
        assert not {j._p_oid for j in mine} & {j._p_oid for j in theirs}
        other_tm.commit()
        transaction.commit()  # lanes merge: no conflict
    transaction.begin()
    assert len(queue) == len(jobs) - 10


def test_an_agent_claims_by_priority(queue):
    dispatcher = queue.dispatchers.register(uuid.uuid4())
    dispatcher["main"] = agent = Agent(size=3)
    put(queue, 1)
    put(queue, 2, priority=2)
    put(queue, 3, priority=1)
    transaction.commit()
    assert [agent.claimJob().args[0] for _ in range(3)] == [2, 3, 1]


def test_a_task_and_a_retry_keep_the_priority(queue):
    from task_examples import double

    job = double.with_options(priority=-5).put(queue, 1)
    assert job.priority == -5
    with pytest.raises(InvalidValueError, match="a task's priority"):
        double.with_options(priority=500)


def test_listing_pull_and_indexing_follow_claim_order(queue, now):
    later_urgent = put(queue, 1, priority=9, begin_after=now + HOUR)
    due_plain = put(queue, 2)
    due_urgent = put(queue, 3, priority=5)
    transaction.commit()
    assert list(queue) == [due_urgent, due_plain, later_urgent]
    assert queue[0] is due_urgent and queue[-1] is later_urgent
    assert queue.pull() is due_urgent
    assert queue.claim() is due_plain
