"""Retry policies (spec 2.10) and how jobs follow them (AC-24 to AC-32)."""

from __future__ import annotations

import datetime
import logging
import uuid

import pytest
import transaction
from ZEO.Exceptions import ClientDisconnected
from ZODB.POSException import ConflictError

import zasync
from zasync import (
    ACTIVE,
    COMPLETED,
    PENDING,
    AbortedError,
    Agent,
    Failure,
    Job,
    NeverRetry,
    RetryCommonForever,
    RetryCommonFourTimes,
)
from zasync.interfaces import IRetryPolicy

import support

HOUR = datetime.timedelta(hours=1)


def failure_of(error_class):
    try:
        raise error_class()
    except error_class:
        return Failure()


def test_ac24_conflicts_are_tried_five_times_in_all(root):
    policy = Job(support.mock_work).getRetryPolicy()
    assert isinstance(policy, RetryCommonFourTimes)
    data = {}
    conflict = failure_of(ConflictError)
    assert [policy.jobError(conflict, data) for _ in range(5)] == [True] * 4 + [False]
    assert policy.commitError(conflict, data) is False
    data = {}
    assert [policy.commitError(conflict, data) for _ in range(5)] == [True] * 4 + [False]
    assert data["transaction_error"] == 4 and data["last_transaction_error"] is conflict


def test_ac25_disconnects_are_retried_forever_with_backoff(sleeps):
    policy = Job(support.mock_work).getRetryPolicy()
    data = {}
    disconnected = failure_of(ClientDisconnected)
    assert all(policy.jobError(disconnected, data) for _ in range(50))
    assert sleeps == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55] + [60] * 39
    assert policy.commitError(disconnected, data) is True
    assert sleeps[-1] == 60 and len(sleeps) == 51


def test_ac26_other_errors_are_not_retried_and_interruptions_nine_times():
    policy = Job(support.mock_work).getRetryPolicy()
    for error in (RuntimeError, ValueError):
        assert policy.jobError(failure_of(error), {}) is False
        assert policy.commitError(failure_of(error), {}) is False
    assert [policy.interrupted() for _ in range(10)] == [True] * 9 + [False]
    assert policy.data["interruptions"] == 10


def test_ac27_retry_forever_and_never_retry():
    forever = RetryCommonForever(Job(support.mock_work))
    data = {}
    conflict = failure_of(ConflictError)
    assert all(forever.jobError(conflict, data) for _ in range(50))
    assert all(forever.commitError(conflict, data) for _ in range(50))
    runtime = failure_of(RuntimeError)
    assert forever.jobError(runtime, {}) is False
    # zc.async retried other commit errors for ever (AC-27): an outcome that
    # cannot be stored re-ran its callback without end.  Bounded here.
    limit = RetryCommonForever.max_other_commit_errors
    assert [forever.commitError(runtime, data) for _ in range(limit)] == [True] * (limit - 1) + [
        False
    ]
    assert data["other"] == limit
    assert forever.commitError(failure_of(TypeError), {}) is False  # cannot pickle: never
    disk_full = {}
    assert all(forever.commitError(failure_of(OSError), disk_full) for _ in range(20))
    assert disk_full["storage_io"] == 20
    assert all(forever.interrupted() for _ in range(20))
    never = NeverRetry(Job(support.mock_work))
    for f in (conflict, runtime, failure_of(ClientDisconnected)):
        assert never.jobError(f, {}) is False
        assert never.commitError(f, {}) is False
    assert never.interrupted() is False


def test_policies_provide_the_interface():
    from zope.interface.verify import verifyObject

    job = Job(support.mock_work)
    for cls in (RetryCommonFourTimes, RetryCommonForever, NeverRetry):
        assert verifyObject(IRetryPolicy, cls(job))


def test_ac28_choosing_the_factory():
    j = Job(support.mock_work)
    j.retry_policy_factory = NeverRetry
    assert isinstance(j.getRetryPolicy(), NeverRetry)
    zasync.set_default_retry_policy(RetryCommonForever)
    assert type(Job(support.mock_work).getRetryPolicy()) is RetryCommonForever
    zasync.set_default_retry_policy(None)
    assert type(Job(support.mock_work).getRetryPolicy()) is RetryCommonFourTimes
    cb = Job(support.mock_work).addCallback(support.success)
    assert type(cb.getRetryPolicy()) is RetryCommonForever
    zasync.set_callback_retry_policy(NeverRetry)
    cb2 = Job(support.mock_work).addCallback(support.success)
    assert type(cb2.getRetryPolicy()) is NeverRetry
    policy = j.getRetryPolicy()
    j.retry_policy_factory = RetryCommonForever
    assert j.getRetryPolicy() is policy


def test_named_policy_and_unknown_name():
    zasync.register_retry_policy("never", NeverRetry)
    j = Job(support.mock_work)
    j.retry_policy_factory = "never"
    assert isinstance(j.getRetryPolicy(), NeverRetry)
    j2 = Job(support.mock_work)
    j2.retry_policy_factory = "nope"
    with pytest.raises(LookupError, match="no retry policy registered as 'nope'"):
        j2.getRetryPolicy()
    with pytest.raises(TypeError):
        zasync.register_retry_policy("bad", 42)
    with pytest.raises(TypeError):
        zasync.set_default_retry_policy("not callable")


@pytest.mark.parametrize("error", [ValueError, TypeError, RuntimeError])
def test_ac29_plain_errors_run_once(root, error):
    support.flaky_registry["x"] = flaky = support.Flaky(error, 100)
    root["j"] = j = Job(support.flaky, "x")
    transaction.commit()
    res = j()
    assert flaky.calls == 1
    assert res.check(error)


def test_ac29_conflicts_and_disconnects(root, sleeps):
    support.flaky_registry["c"] = always = support.Flaky(ConflictError, 100)
    root["a"] = a = Job(support.flaky, "c")
    support.flaky_registry["t"] = twice = support.Flaky(ConflictError, 2)
    root["b"] = b = Job(support.flaky, "t")
    support.flaky_registry["d"] = disc = support.Flaky(ClientDisconnected, 49)
    root["d"] = d = Job(support.flaky, "d")
    transaction.commit()
    assert a().check(ConflictError) and always.calls == 5
    assert b() == 42 and twice.calls == 3
    assert d() == 42 and disc.calls == 50
    assert len(sleeps) == 49
    assert d.getRetryPolicy().data["disconnected"] == 49


def _claimed(queue, job, **put_options):
    """Put ``job`` and claim it into an agent, as a dispatcher would."""
    import uuid

    da = queue.dispatchers.register(uuid.uuid4())
    da["main"] = agent = Agent()
    queue.put(job, **put_options)
    assert agent.claimJob() is job
    transaction.commit()
    return agent


@pytest.mark.parametrize(
    "answer, expected",
    [
        (HOUR, datetime.datetime(2006, 8, 10, 16, 44, 22, 211, tzinfo=datetime.UTC)),
        (datetime.datetime(3000, 1, 1), datetime.datetime(3000, 1, 1, tzinfo=datetime.UTC)),
    ],
)
def test_ac30_job_error_reschedules(queue, now, answer, expected):
    support.reply["value"] = answer
    j = Job(support.raise_type_error)
    agent = _claimed(queue, j, retry_policy_factory=support.StubPolicy)
    assert j() is j
    assert j.status == PENDING
    assert j not in list(agent)
    assert j.begin_after == expected
    assert queue[-1] is j
    transaction.commit()


def test_reschedule_outside_an_agent_records_the_failure(root, caplog):
    support.reply["value"] = HOUR
    j = Job(support.raise_type_error)
    j.retry_policy_factory = support.StubPolicy
    root["j"] = j
    transaction.commit()
    with caplog.at_level(logging.CRITICAL, "zasync.events"):
        res = j()
    assert res.check(TypeError)
    assert "can only reschedule a job directly in an agent" in caplog.text


def test_ac31_commit_errors(root, caplog):
    support.commit_failures.update(remaining=1, calls=0)
    j = Job(support.work_with_failing_commit, "value")
    root["j"] = j
    transaction.commit()
    with caplog.at_level(logging.INFO, "zasync"):
        res = j()
    assert res.check(ValueError)
    assert support.commit_failures["calls"] == 1
    assert "Prior to this, job succeeded with result: 42" in caplog.text
    assert j.status == COMPLETED

    support.commit_failures.update(remaining=-1, calls=0)
    root["j2"] = j2 = Job(support.work_with_failing_commit, "conflict")
    transaction.commit()
    assert j2().check(ConflictError)
    assert support.commit_failures["calls"] == 5

    support.commit_failures.update(remaining=2, calls=0)
    root["j3"] = j3 = Job(support.work_with_failing_commit, "conflict")
    transaction.commit()
    assert j3() == 42
    assert support.commit_failures["calls"] == 3


def test_ac31_commit_error_reschedules(queue, now):
    support.reply["value"] = HOUR
    support.commit_failures.update(remaining=1, calls=0)
    j = Job(support.work_with_failing_commit, "value")
    _claimed(queue, j, retry_policy_factory=support.StubPolicy)
    assert j() is j
    assert j.status == PENDING
    assert j.begin_after == now + HOUR


def test_ac32_handle_interrupt(queue, now):
    j = Job(support.mock_work)
    queue.put(j)
    transaction.commit()
    queue.pull()
    j._status = ACTIVE.value
    j.parent = queue  # an active job found through its queue
    transaction.commit()
    j.handleInterrupt()
    assert j.status == PENDING
    assert queue[0] is j
    transaction.commit()
    import uuid

    da = queue.dispatchers.register(uuid.uuid4())
    da["main"] = agent = Agent()
    for _ in range(8):
        assert agent.claimJob() is j
        j._status = ACTIVE.value
        transaction.commit()
        j.handleInterrupt()
        assert j.status == PENDING
        transaction.commit()
    assert agent.claimJob() is j
    j._status = ACTIVE.value
    transaction.commit()
    j.handleInterrupt()
    assert j.status == COMPLETED
    assert j.result.check(AbortedError)
    assert j.getRetryPolicy().data["interruptions"] == 10


def test_ac32_interrupt_policy_reschedules_later(queue, now):
    support.reply["value"] = HOUR
    j = Job(support.mock_work)
    agent = _claimed(queue, j, retry_policy_factory=support.StubPolicy)
    j._status = ACTIVE.value
    transaction.commit()
    j.handleInterrupt()
    assert j.status == PENDING
    assert j.begin_after == now + HOUR
    assert len(agent) == 0


def test_b22_interrupted_job_without_queue_is_aborted(root):
    j = Job(support.mock_work)
    root["j"] = j
    j._status = ACTIVE.value
    transaction.commit()
    j.handleInterrupt()
    assert j.status == COMPLETED
    assert j.result.check(AbortedError)


def test_handle_interrupt_refuses_other_statuses(root):
    root["j"] = j = Job(support.mock_work)
    transaction.commit()
    with pytest.raises(zasync.BadStatusError, match="can only call ``handleInterrupt``"):
        j.handleInterrupt()


def test_b1_no_retry_after_the_start_deadline(queue, now):
    support.flaky_registry["late"] = flaky = support.Flaky(ConflictError, 2)
    j = Job(support.flaky, "late")
    _claimed(queue, j, begin_by=datetime.timedelta(minutes=5))
    zasync.clock.advance(datetime.timedelta(minutes=10))
    assert j().check(ConflictError)
    assert flaky.calls == 1


def test_reschedule_rejects_bad_when(root):
    with pytest.raises(TypeError, match="must be datetime or timedelta"):
        Job(support.mock_work)._reschedule(5)


def test_a_conflict_while_handling_an_interruption_counts_once(db, queue):
    da = queue.dispatchers.register(uuid.uuid4())
    da["main"] = agent = Agent()
    job = queue.put(support.mock_work)
    transaction.commit()
    assert agent.claimJob() is job
    job._status = ACTIVE.value
    transaction.commit()
    job.handleInterrupt()  # counted and rescheduled, not yet committed
    other_tm = transaction.TransactionManager()
    other = db.open(transaction_manager=other_tm)
    try:
        other.get(job._p_oid).failure_log_level = 5  # a concurrent change to the job
        other_tm.commit()
    finally:
        other.close()
    with pytest.raises(ConflictError):
        transaction.commit()
    transaction.abort()
    job.handleInterrupt()  # what the wrapper's retry does
    transaction.commit()
    assert job.status == PENDING
    assert job._retry_policy.data["interruptions"] == 1


def test_conflict_retries_are_counted_where_they_are_caught(root):
    from zasync import _counters

    _counters.reset()
    root["j"] = job = Job(support.always_conflict)
    transaction.commit()
    result = job()
    assert isinstance(result, Failure) and result.check(ConflictError)
    assert _counters.conflict_counts() == {"job": 5}  # five tries in all, by default


def test_a_server_failing_the_vote_is_waited_out_not_the_jobs_failure(sleeps):
    """A ZEO server stopped in the middle of a vote answers ServerException (seen in the
    fault campaign: SIGTERM's SystemExit inside the server's read became a SystemError)."""
    from ZEO.Exceptions import ServerException
    from ZODB.POSException import ReadOnlyError

    for policy in (RetryCommonFourTimes, RetryCommonForever, zasync.BackoffRetryPolicy):
        job = Job(support.mock_work)
        made = policy(job, zasync.Retry()) if policy is zasync.BackoffRetryPolicy else policy(job)
        data = {}
        failures = [failure_of(ServerException), failure_of(ReadOnlyError)] * 10
        assert all(made.commitError(f, data) is True for f in failures), policy
        assert data["storage_io"] == 20
    assert sleeps[-1] == 60
    assert NeverRetry(Job(support.mock_work)).commitError(failure_of(ServerException), {}) is False
