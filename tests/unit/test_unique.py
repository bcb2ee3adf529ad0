"""Unique jobs: a put whose key a job holds returns that job; keys are given up when they should."""

from __future__ import annotations

import operator

import pytest
import transaction
from ZODB.POSException import ConflictError

import zasync
from task_examples import sync_account, sync_by_name
from zasync import COMPLETED, PENDING, Job, Retry
from zasync.errors import InvalidValueError
from zasync.model import unique

import support
from support import another_connection


def test_a_second_put_with_the_key_returns_the_first_job(queue):
    first = queue.put(Job(operator.add, 1, 2), unique_key="sum")
    second = queue.put(Job(operator.add, 3, 4), unique_key="sum", quota_names=())
    assert second is first and len(queue) == 1
    other = queue.put(Job(operator.add, 5, 6), unique_key="another")
    assert other is not first and len(queue) == 2
    transaction.commit()
    assert unique.holder(queue, "sum") is first and first._unique == ("sum", "started")


def test_jobs_without_a_key_never_touch_the_keys(queue):
    queue.put(Job(operator.add, 1, 2))
    transaction.commit()
    assert queue._unique is None


@pytest.mark.parametrize(
    "options, message",
    [
        ({"unique_key": ""}, "non-empty string"),
        ({"unique_key": "x" * 501}, "at most 500"),
        ({"unique_key": 42}, "non-empty string"),
        ({"unique_until": "finished"}, "goes with a unique_key"),
        ({"unique_key": "k", "unique_until": "later"}, "'started' or 'finished'"),
    ],
)
def test_a_bad_key_is_refused_and_changes_nothing(queue, options, message):
    job = Job(operator.add, 1, 2)
    with pytest.raises(InvalidValueError, match=message):
        queue.put(job, **options)
    assert len(queue) == 0 and queue._unique is None and job._p_jar is None


def test_until_started_the_key_is_free_once_the_job_is_claimed(queue, agent):
    first = queue.put(Job(operator.add, 1, 2), unique_key="k")
    transaction.commit()
    assert agent.claimJob() is first
    second = queue.put(Job(operator.add, 1, 2), unique_key="k")
    assert second is not first
    transaction.commit()
    assert first() == 3  # the first one finishing leaves the second one's key alone
    transaction.commit()
    assert unique.holder(queue, "k") is second
    assert queue.put(Job(operator.add, 1, 2), unique_key="k") is second


def test_until_finished_a_running_job_keeps_its_key(queue, agent):
    first = queue.put(Job(operator.add, 1, 2), unique_key="k", unique_until="finished")
    transaction.commit()
    assert agent.claimJob() is first
    transaction.commit()
    assert queue.put(Job(operator.add, 1, 2), unique_key="k") is first
    assert first() == 3 and first.status == COMPLETED
    transaction.commit()
    assert unique.holder(queue, "k") is None and first._unique == ("k", "finished")  # kept to retry
    assert queue.put(Job(operator.add, 1, 2), unique_key="k") is not first


@pytest.mark.parametrize("how", ["remove", "pull", "cancel"])
def test_taking_a_pending_job_out_gives_its_key_up(queue, how):
    job = queue.put(Job(operator.add, 1, 2), unique_key="k", unique_until="finished")
    transaction.commit()
    if how == "remove":
        queue.remove(job)
    elif how == "pull":
        assert queue.pull() is job
    else:
        assert zasync.cancel(job) == "cancelled"
    transaction.commit()
    assert unique.holder(queue, "k") is None and job._unique is None


def test_a_job_rescheduled_for_a_retry_takes_its_key_again(queue, agent, now):
    support.flaky_registry["unique"] = support.Flaky(KeyError, 1)
    job = queue.put(Job(support.flaky, "unique"), unique_key="k", retry=Retry(backoff=60, jitter=0))
    transaction.commit()
    assert agent.claimJob() is job
    transaction.commit()
    assert unique.holder(queue, "k") is None  # started
    assert job() is job and job.status == PENDING  # rescheduled in a minute
    transaction.commit()
    assert unique.holder(queue, "k") is job
    assert queue.put(Job(operator.add, 1, 2), unique_key="k") is job


def test_a_retry_finding_its_key_taken_leaves_it_to_the_other_job(queue, agent, now):
    support.flaky_registry["taken"] = support.Flaky(KeyError, 1)
    job = queue.put(Job(support.flaky, "taken"), unique_key="k", retry=Retry(jitter=0))
    transaction.commit()
    assert agent.claimJob() is job
    transaction.commit()
    newcomer = queue.put(Job(operator.add, 1, 2), unique_key="k")
    transaction.commit()
    assert job() is job and job.status == PENDING
    transaction.commit()
    assert unique.holder(queue, "k") is newcomer and job._unique is None


def test_an_interrupted_job_aborted_for_good_gives_its_key_up(queue, agent, now):
    job = queue.put(Job(support.mock_work), unique_key="k", unique_until="finished", retry="never")
    transaction.commit()
    assert agent.claimJob() is job
    job._mark_active(now)
    transaction.commit()
    job.handleInterrupt()  # its worker died; "never" aborts it
    transaction.commit()
    assert job.result.check(zasync.AbortedError)
    assert unique.holder(queue, "k") is None


def test_a_discarded_quarantined_job_gives_its_key_up(queue):
    job = queue.put(Job(operator.add, 1, 2), unique_key="k")
    transaction.commit()
    queue.quarantine(job, "cannot be loaded", job._queue_key)
    transaction.commit()
    assert unique.holder(queue, "k") is job  # released later, it runs with its key
    queue.discard_quarantined(int.from_bytes(job._p_oid, "big"))
    transaction.commit()
    assert unique.holder(queue, "k") is None


def test_two_concurrent_puts_of_one_key_end_with_one_job(db, conn, queue):
    mine = queue.put(Job(operator.add, 1, 2), unique_key="shared")
    queue.put(Job(operator.add, 0, 0), unique_key="warm")  # the keys' tree exists
    transaction.commit()
    queue.remove(mine)
    transaction.commit()
    with another_connection(db) as (other, other_tm):
        theirs = zasync.get_queue(other).put(Job(operator.add, 5, 5), unique_key="shared")
        mine = queue.put(Job(operator.add, 1, 2), unique_key="shared")
        other_tm.commit()
        with pytest.raises(ConflictError):
            transaction.commit()  # both inserted the key: BTrees cannot merge that
        transaction.abort()
        # The retry, as transaction.manager.attempts() runs it, sees the winner.
        winner = queue.put(Job(operator.add, 1, 2), unique_key="shared")
        assert winner._p_oid == theirs._p_oid
        transaction.commit()
    assert [j._p_oid for j in queue if j._unique and j._unique[0] == "shared"] == [theirs._p_oid]


def test_concurrent_puts_of_different_keys_both_commit(db, conn, queue):
    queue.put(Job(operator.add, 0, 0), unique_key="warm")
    transaction.commit()
    with another_connection(db) as (other, other_tm):
        zasync.get_queue(other).put(Job(operator.add, 5, 5), unique_key="theirs")
        queue.put(Job(operator.add, 1, 2), unique_key="mine")
        other_tm.commit()
        transaction.commit()  # inserts of different keys merge
    transaction.begin()
    assert {unique.holder(queue, k) is not None for k in ("mine", "theirs")} == {True}


def test_a_task_fills_its_key_from_the_arguments(queue):
    first = sync_account.put(queue, "acme")
    assert sync_account.put(queue, "acme", full=True) is first
    assert first._unique == ("sync-acme", "finished")
    assert sync_account.put(queue, "globex") is not first
    assert sync_by_name.put(queue, account="initech")._unique == ("sync-initech", "started")
    with pytest.raises(InvalidValueError, match="does not fit the arguments"):
        sync_by_name.put(queue, "initech")  # by position: the template names it
    assert len(queue) == 3
    by_function = zasync.task(unique_key=lambda a, b: f"{a}x{b}")(support.multiply)
    assert by_function.options.key_for((1, 2), {}) == "1x2"
    with pytest.raises(InvalidValueError, match="goes with a unique_key"):
        zasync.task(unique_until="finished")(support.multiply)


def test_keys_are_per_queue(queues):
    queues["other"] = zasync.Queue()
    transaction.commit()
    one = queues[""].put(Job(operator.add, 1, 2), unique_key="k")
    two = queues["other"].put(Job(operator.add, 1, 2), unique_key="k")
    assert one is not two
