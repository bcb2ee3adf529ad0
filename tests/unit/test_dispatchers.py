"""Dispatchers, pings, death, deactivation and agents (spec 5-6, AC-43 to AC-50)."""

from __future__ import annotations

import datetime
import logging
import uuid

import pytest
import transaction

import zasync
from zasync import (
    ACTIVE,
    CALLBACKS,
    COMPLETED,
    PENDING,
    Agent,
    Job,
    RetryCommonForever,
)
from zasync.model.events import DispatcherActivated, DispatcherDeactivated, DispatcherRegistered

import support

SECOND = datetime.timedelta(seconds=1)


def register(queue, size=3, name="main"):
    da = queue.dispatchers.register(uuid.uuid4())
    da[name] = agent = Agent(size=size)
    return da, agent


def test_ac43_register_and_activate(queue, now, events):
    u = uuid.uuid4()
    da = queue.dispatchers.register(u)
    assert list(queue.dispatchers) == [u] and u in queue.dispatchers
    registered = [e for e in events if isinstance(e, DispatcherRegistered)]
    assert len(registered) == 1 and registered[0].object is da
    assert u == da.UUID and da.parent is queue
    assert da.activated is None and da.last_ping.value is None
    assert da.ping_interval == 30 * SECOND and da.ping_death_interval == 60 * SECOND
    assert not da.dead
    da.activate()
    assert da.activated == now
    assert any(isinstance(e, DispatcherActivated) and e.object is da for e in events)
    with pytest.raises(ValueError, match="Already activated"):
        da.activate()
    with pytest.raises(KeyError):
        queue.dispatchers[2]
    with pytest.raises(ValueError, match="UUID already registered"):
        queue.dispatchers.register(u)


def test_unregister(queue, events):
    u = uuid.uuid4()
    da = queue.dispatchers.register(u)
    da.activate()
    with pytest.raises(ValueError, match=r"UUID is activated\."):
        queue.dispatchers.unregister(u)
    da.deactivate()
    assert queue.dispatchers.unregister(u) is da
    assert da.parent is None and u not in queue.dispatchers
    assert type(events[-1]).__name__ == "DispatcherUnregistered"  # B-5 fixed
    with pytest.raises(KeyError):
        queue.dispatchers.unregister(u)
    with pytest.raises(ValueError, match="Not activated"):
        da.deactivate()


def test_ac44_ping_cadence(queue, now):
    da, _ = register(queue)
    da.activate()
    queue.dispatchers.ping(da.UUID)
    first = da.last_ping.value
    assert first == now
    for seconds in (5, 15):
        zasync.set_now(now + seconds * SECOND)
        queue.dispatchers.ping(da.UUID)
        assert da.last_ping.value == first
    zasync.set_now(now + 30 * SECOND)
    queue.dispatchers.ping(da.UUID)
    assert da.last_ping.value == now + 30 * SECOND


def test_ping_errors(queue):
    da, _ = register(queue)
    with pytest.raises(ValueError, match=r"UUID is not activated\."):
        queue.dispatchers.ping(da.UUID)
    with pytest.raises(KeyError):
        queue.dispatchers.ping(uuid.uuid4())


def test_ac45_dead_sibling_is_deactivated_by_ping(queue, now):
    me, _ = register(queue)
    sibling, _ = register(queue)
    me.activate()
    sibling.activate()
    zasync.set_now(now + 61 * SECOND)
    assert sibling.dead
    queue.dispatchers.ping(me.UUID)
    assert not sibling.activated
    assert me.activated


def test_ac46_to_ac47_deactivation_hands_jobs_back(queue, now, events):
    da, agent = register(queue, size=4)
    da.activate()
    jobs = {name: queue.put(Job(support.mock_work)) for name in "ABCDE"}
    transaction.commit()
    for _ in range(4):
        agent.claimJob()
    a, b, c, d = (jobs[n] for n in "ABCD")
    b._status = ACTIVE.value
    c._status = CALLBACKS.value
    c._result = 42
    d._status = COMPLETED.value
    transaction.commit()
    me, _ = register(queue)
    me.activate()
    zasync.set_now(now + 61 * SECOND)
    # whichever is "next" in the UUID ring, the dead one is deactivated by one of them
    for u in (me.UUID,):
        queue.dispatchers.ping(u)
    assert not da.activated
    assert any(isinstance(e, DispatcherDeactivated) and e.object is da for e in events)
    assert len(agent) == 0 and len(queue) == 4
    assert queue[0] is jobs["E"]
    assert queue[1] is a
    assert queue[2].callable == b.handleInterrupt
    assert queue[3].callable == c.resumeCallbacks
    for wrapper in (queue[2], queue[3]):
        assert wrapper.failure_log_level == logging.CRITICAL
        assert wrapper.retry_policy_factory is RetryCommonForever
    assert agent.completed.first() is d
    transaction.commit()

    # AC-47: run the handleInterrupt wrapper; B goes back to the front
    _, agent2 = register(queue, size=10)
    assert queue.claim() is jobs["E"]
    assert queue.claim() is a
    wrapper = agent2.claimJob()
    assert wrapper.callable == b.handleInterrupt
    transaction.commit()
    wrapper()
    assert len(queue) == 2
    assert queue[0] is b and b.status == PENDING
    assert agent2.claimJob() is b
    transaction.commit()
    assert b() == 42
    resume = agent2.claimJob()
    transaction.commit()
    resume()
    assert c.status == COMPLETED and c.result == 42


def test_ac47_interrupt_rescheduled_for_later(queue, now):
    support.reply["value"] = datetime.datetime(3000, 1, 1, tzinfo=datetime.UTC)
    da, agent = register(queue)
    da.activate()
    job = queue.put(Job(support.mock_work), retry_policy_factory=support.StubPolicy)
    transaction.commit()
    assert agent.claimJob() is job
    job._status = ACTIVE.value
    for _ in range(3):
        queue.put(support.mock_work)
    transaction.commit()
    da.deactivate()
    assert queue[3].callable == job.handleInterrupt
    da2 = queue.dispatchers.register(uuid.uuid4())
    da2["interrupts"] = Agent(size=1, filter=support.is_interrupt_handler)
    wrapper = da2["interrupts"].claimJob()
    assert wrapper.callable == job.handleInterrupt
    transaction.commit()
    wrapper()
    assert queue[3] is job
    assert job.begin_after == datetime.datetime(3000, 1, 1, tzinfo=datetime.UTC)


def test_ac48_quota_slot_kept_by_immediate_retry(queue, now):
    queue.quotas.create("q", 1)
    _, agent = register(queue, size=5)
    j = queue.put(support.mock_work, quota_names=("q",))
    j2 = queue.put(support.mock_work, quota_names=("q",))
    transaction.commit()
    assert agent.claimJob() is j
    j._status = ACTIVE.value
    transaction.commit()
    j.handleInterrupt()  # default policy: retry now, put back at the front
    transaction.commit()
    assert j.status == PENDING and queue[0] is j
    assert agent.claimJob() is j  # keeps its slot: claimable despite the full quota
    assert queue.claim() is None  # j2 must wait
    transaction.commit()
    j()
    assert queue.claim() is j2


def test_ac48_quota_slot_released_by_later_retry(queue, now):
    support.reply["value"] = datetime.timedelta(hours=1)
    queue.quotas.create("q", 1)
    _, agent = register(queue, size=5)
    j2 = queue.put(support.mock_work, quota_names=("q",), retry_policy_factory=support.StubPolicy)
    j3 = queue.put(support.mock_work, quota_names=("q",))
    transaction.commit()
    assert agent.claimJob() is j2
    j2._status = ACTIVE.value
    transaction.commit()
    j2.handleInterrupt()
    assert j2.status == PENDING
    transaction.commit()
    assert queue.claim() is j3


@pytest.mark.parametrize("where", ["job", "commit"])
def test_ac49_retry_now_goes_to_the_front_later_to_the_back(queue, now, where):
    support.reply["value"] = datetime.timedelta()
    support.commit_failures.update(remaining=1 if where == "commit" else 0, calls=0)
    callable_ = (
        Job(support.raise_type_error)
        if where == "job"
        else Job(support.work_with_failing_commit, "value")
    )
    _, agent = register(queue)
    j = queue.put(callable_, retry_policy_factory=support.StubPolicy)
    queue.put(support.mock_work)
    transaction.commit()
    assert agent.claimJob() is j
    transaction.commit()
    assert j() is j
    assert agent.claimJob() is j  # at the front again
    support.reply["value"] = datetime.timedelta(hours=1)
    support.commit_failures.update(remaining=1, calls=0)
    queue.put(support.mock_work)
    transaction.commit()
    assert j() is j
    assert queue[-1] is j
    assert queue[-2] is not j


def test_ac50_agent_claims_up_to_its_size(queue, now):
    _, agent = register(queue, size=3)
    jobs = [queue.put(Job(support.mock_work)) for _ in range(5)]
    transaction.commit()
    assert [agent.claimJob() for _ in range(3)] == jobs[:3]
    assert all(j.parent is agent for j in jobs[:3])
    assert agent.claimJob() is None
    transaction.commit()
    assert jobs[1]() == 42
    assert list(agent) == [jobs[0], jobs[2]]
    assert list(agent.completed) == [jobs[1]]
    assert jobs[1].parent is agent
    assert jobs[1].initial_callbacks_end == now
    assert agent.claimJob() is jobs[3]


def test_agent_filter_and_errors(queue):
    da = queue.dispatchers.register(uuid.uuid4())
    da["ors"] = agent = Agent(size=2, filter=support.only_or)
    import operator

    queue.put(Job(operator.add, 1, 2))
    wanted = queue.put(Job(operator.or_, 1, 2))
    assert agent.claimJob() is wanted
    assert agent.index(wanted) == 0
    with pytest.raises(ValueError, match="not in Agent"):
        agent.remove(Job(support.mock_work))
    with pytest.raises(ValueError, match="cannot remove an agent with active jobs"):
        da["ors"] = Agent()
    with pytest.raises(ValueError, match="cannot remove an agent with active jobs"):
        da.pop("ors")
    with pytest.raises(ValueError, match="value must be IAgent"):
        da["x"] = object()
    busy = Agent()
    busy._jobs[1] = Job(support.mock_work)
    with pytest.raises(ValueError, match="cannot add an agent with active jobs"):
        da["busy"] = busy
    with pytest.raises(ValueError, match="agent size must be"):
        Agent(size=-1)
    assert agent.pull() is wanted and wanted.parent is None
    with pytest.raises(IndexError):
        agent.pull()


def test_completed_collection_retention(queue, now):
    _, agent = register(queue, size=10)
    agent.completed.retention = datetime.timedelta(days=1)
    old = queue.put(support.mock_work)
    transaction.commit()
    agent.claimJob()
    transaction.commit()
    old()
    assert list(agent.completed) == [old]
    zasync.set_now(now + datetime.timedelta(days=2))
    new = queue.put(support.mock_work)
    agent.claimJob()
    transaction.commit()
    new()
    assert list(agent.completed) == [new]  # the old one fell out of the window
    assert len(agent.completed) == 1
    assert agent.completed.last() is new
    with pytest.raises(ValueError, match="retention must be a positive"):
        agent.completed.retention = datetime.timedelta(0)
    agent.completed.clear()
    with pytest.raises(ValueError, match="no completed jobs"):
        agent.completed.first()
    with pytest.raises(ValueError, match="no completed jobs"):
        agent.completed.last()


def test_completed_collection_time_ranges(queue, now):
    _, agent = register(queue, size=10)
    done = []
    for minutes in (0, 10, 20):
        zasync.set_now(now + datetime.timedelta(minutes=minutes))
        job = queue.put(support.mock_work)
        agent.claimJob()
        transaction.commit()
        job()
        done.append(job)
    assert list(agent.completed) == done[::-1]
    middle = now + datetime.timedelta(minutes=10)
    assert list(agent.completed.iter(start=middle)) == [done[1], done[0]]
    assert list(agent.completed.iter(stop=middle)) == [done[2], done[1]]
    assert agent.completed.first(middle) is done[1]
    assert agent.completed.last(middle) is done[1]
    assert agent.completed.last() is done[0]


def test_parked_jobs_take_no_slot_and_survive_deactivation(queue, now):
    da, agent = register(queue, size=1)
    da.activate()
    outer = queue.put(support.mock_work)
    inner = queue.put(support.mock_work)
    transaction.commit()
    assert agent.claimJob() is outer
    outer._status = ACTIVE.value
    agent.park(outer)
    assert len(agent) == 0 and agent.parked() == [outer] and agent.is_parked(outer)
    assert agent.claimJob() is inner  # the slot is free
    inner._status = ACTIVE.value
    transaction.commit()
    da.deactivate()
    assert agent.parked() == [outer] and outer.status == ACTIVE  # not interrupted
    assert queue[0].callable == inner.handleInterrupt
    agent.jobCompleted(outer)
    assert agent.parked() == [] and list(agent.completed) == [outer]
