"""Broadcast: one copy per live worker, each claimable by its worker only, and a collector."""

from __future__ import annotations

import operator
import uuid

import pytest
import transaction

import zasync
from zasync import COMPLETED, Agent, Job
from zasync.errors import InvalidValueError
from zasync.model import broadcast


def worker(queue, name):
    record = queue.dispatchers.register(uuid.uuid4())
    record["main"] = agent = Agent(size=10)
    record.activate()
    return record, agent


def run(agent):
    job = agent.claimJob()
    assert job is not None
    transaction.commit()
    job()
    transaction.commit()
    return job


def test_each_live_worker_runs_its_copy_and_the_collector_gathers_them(queue):
    first, first_agent = worker(queue, "a")
    second, second_agent = worker(queue, "b")
    stopped, _ = worker(queue, "c")
    stopped.deactivate()
    transaction.commit()
    collector = zasync.broadcast(queue, operator.add, 20, 22)
    transaction.commit()
    assert len(queue) == 2 and queue.waiting == [collector]  # none for the stopped worker

    mine = run(first_agent)
    assert mine._target == first.UUID.int and first_agent.claimJob() is None  # not the other's
    transaction.abort()
    run(second_agent)
    assert run(first_agent) is collector and collector.status == COMPLETED
    assert collector.result == {str(first.UUID): 42, str(second.UUID): 42}


def test_a_worker_that_stops_before_its_copy_ran_makes_it_fail(queue):
    first, first_agent = worker(queue, "a")
    second, _ = worker(queue, "b")
    transaction.commit()
    collector = zasync.broadcast(queue, operator.add, 1, 1)
    transaction.commit()
    second.deactivate()  # stopped (or found dead) before claiming its copy
    transaction.commit()
    ran = [run(first_agent) for _ in range(3)]  # its copy, the failing of the other, then
    assert ran[-1] is collector
    results = collector.result
    assert results[str(first.UUID)] == 2
    assert (
        "AbortedError" in results[str(second.UUID)]
        and "stopped before it ran" in results[str(second.UUID)]
    )


def test_no_live_worker_is_refused_and_nothing_is_put(queue):
    with pytest.raises(InvalidValueError, match="no worker of queue '' is alive"):
        zasync.broadcast(queue, operator.add, 1, 1)
    assert len(queue) == 0


def test_a_claim_without_a_claimer_never_takes_a_targeted_copy(queue):
    worker(queue, "a")
    transaction.commit()
    zasync.broadcast(queue, operator.add, 1, 1)
    assert queue.claim() is None
    copy = next(iter(queue))
    assert not broadcast.admits(copy, None) and not broadcast.admits(copy, uuid.uuid4())
    assert broadcast.admits(Job(operator.add), None)


def test_a_copy_handed_back_by_a_dead_worker_fails_instead_of_waiting_for_ever(queue):
    _first, first_agent = worker(queue, "a")
    second, second_agent = worker(queue, "b")
    transaction.commit()
    collector = zasync.broadcast(queue, operator.add, 1, 1)
    transaction.commit()
    held = second_agent.claimJob()  # claimed, then its worker died before running it
    transaction.commit()
    second.deactivate()  # a sibling's verdict hands its held jobs back
    transaction.commit()
    assert held.status == zasync.PENDING and held._target == second.UUID.int
    ran = [run(first_agent) for _ in range(3)]
    assert ran[-1] is collector
    assert "its worker stopped before it ran" in collector.result[str(second.UUID)]
    assert held.result.check(zasync.AbortedError)


def test_a_copy_removed_by_an_operator_is_reported_as_not_run(queue):
    _first, first_agent = worker(queue, "a")
    second, _ = worker(queue, "b")
    transaction.commit()
    collector = zasync.broadcast(queue, operator.add, 1, 1)
    transaction.commit()
    theirs = next(job for job in queue if job._target == second.UUID.int)
    queue.remove(theirs)
    transaction.commit()
    run(first_agent)
    assert run(first_agent) is collector
    assert collector.result[str(second.UUID)] == "not run: removed from its queue"
