"""Jobs and transactions across connections (spec 8, AC-51 to AC-54)."""

from __future__ import annotations

import datetime

import pytest
import transaction
from ZODB.POSException import ConflictError

import zasync
from zasync import ACTIVE, COMPLETED, PENDING, Failure, Job
from zasync.testing import run_until_idle

import support


def test_ac51_put_run_and_callbacks(db, conn, queues):
    assert zasync.KEY == "zasync"
    assert queues.keys() == [""]
    queue = queues[""]
    job = queue.put(support.imaginary_network_call)
    assert job.status == PENDING
    assert run_until_idle(db, sync=False) == []  # not committed: no worker sees it
    transaction.commit()
    assert run_until_idle(db) == ["200 OK"]
    assert job.result == "200 OK" and job.status == COMPLETED
    scribbled = job.addCallback(support.scribble)
    assert scribbled.result == "200 OK: SCRIBBLED"
    transaction.commit()
    bad = queue.put(support.raise_name_error)
    handled = bad.addCallbacks(failure=support.handle_name_error)
    chained = handled.addCallback(support.scribble)
    transaction.commit()
    run_until_idle(db)
    assert isinstance(bad.result, Failure)
    assert handled.result == "I handled a name error"
    assert chained.result == "I handled a name error: SCRIBBLED"


def test_ac52_scheduled_and_expired(db, queue, now):
    at_1556 = datetime.datetime(2006, 8, 10, 15, 56, tzinfo=datetime.UTC)
    scheduled = queue.put(support.mock_work, begin_after=at_1556)
    expired = queue.put(
        support.mock_work,
        begin_after=datetime.datetime(2006, 7, 21, 12, tzinfo=datetime.UTC),
        begin_by=datetime.timedelta(hours=1),
    )
    transaction.commit()
    run_until_idle(db)
    assert scheduled.status == PENDING
    assert expired.status == COMPLETED and expired.result.check(zasync.TimeoutError)
    zasync.set_now(at_1556)
    assert run_until_idle(db) == [42]
    assert scheduled.result == 42


def test_ac53_serial_and_parallel(db, queue):
    serial = queue.put(Job.bind(support.serial_main))
    parallel = queue.put(Job.bind(support.parallel_main))
    transaction.commit()
    run_until_idle(db)
    assert serial.result == 42 and serial.status == COMPLETED
    assert parallel.result == 42 and parallel.status == COMPLETED
    # the finished outer jobs were filed by their agent (B-8 fixed)
    agent = queue.dispatchers.values()[0]["main"]
    assert len(agent) == 0
    assert serial in list(agent.completed) and parallel in list(agent.completed)


def test_ac53_quota_keeps_second_job_pending(db, queue):
    queue.quotas.create("test", 1)
    first = queue.put(support.mock_work, quota_names=("test",))
    second = queue.put(support.mock_work, quota_names=("test",))
    transaction.commit()
    assert queue.claim() is first
    first._status = ACTIVE.value
    assert queue.claim() is None
    assert second.status == PENDING


def test_ac54_callback_added_during_callbacks_is_run(db, root):
    support.calls.clear()
    j = Job(support.mock_work)
    j.addCallback(Job(support.add_callback_from_elsewhere, j))
    j.addCallback(support.count_call)
    root["j"] = j
    transaction.commit()
    j()
    assert support.calls == ["called", "called", "called"]
    assert len(j.callbacks) == 3 and j.status == COMPLETED


def test_ac54_stale_adder_gets_conflict_error(db, queue):
    support.calls.clear()
    job = queue.put(support.mock_work)
    transaction.commit()
    adder_tm = transaction.TransactionManager()
    adder = db.open(transaction_manager=adder_tm)
    try:
        adder_tm.begin()
        stale = adder.get(job._p_oid)
        assert stale.status == PENDING
        run_until_idle(db)  # a worker completes the job meanwhile
        stale.addCallback(support.count_call)  # adder's snapshot: not completed
        assert support.calls == []
        with pytest.raises(ConflictError):
            adder_tm.commit()
        adder_tm.abort()
        adder_tm.begin()
        assert stale.status == COMPLETED
        stale.addCallback(support.count_call)  # runs at once now
        assert support.calls == ["called"]
        adder_tm.commit()
    finally:
        adder.close()
