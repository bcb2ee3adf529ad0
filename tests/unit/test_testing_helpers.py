"""The helpers zasync.testing offers users for testing their own jobs."""

from __future__ import annotations

import operator

import pytest
import transaction

from zasync import COMPLETED, Failure, Job
from zasync.testing import count_commits, run_until_idle, running_dispatcher, wait_for_result


def test_run_until_idle_calls_due_jobs_in_order_without_a_worker(zasync_db, zasync_queue):
    jobs = [zasync_queue.put(Job(operator.mul, n, 2)) for n in range(3)]
    transaction.commit()
    assert sorted(run_until_idle(zasync_db)) == [0, 2, 4]
    assert [job.status for job in jobs] == [COMPLETED] * 3  # the caller sees the results
    assert run_until_idle(zasync_db) == []  # nothing due any more


def test_run_until_idle_stops_at_its_limit(zasync_db, zasync_queue):
    jobs = [zasync_queue.put(Job(operator.add, n, 0)) for n in range(5)]
    transaction.commit()
    assert len(run_until_idle(zasync_db, limit=2)) == 2
    assert sum(job.status == COMPLETED for job in jobs) == 2


def test_wait_for_result_can_raise_the_jobs_own_error(zasync_db, zasync_queue):
    job = zasync_queue.put(Job(operator.truediv, 1, 0))
    transaction.commit()
    with running_dispatcher(zasync_db):
        assert isinstance(wait_for_result(job), Failure)
        with pytest.raises(ZeroDivisionError):
            wait_for_result(job, raise_failure=True)


def test_count_commits_counts_only_commits_that_write(zasync_conn):
    with count_commits() as counter:
        transaction.commit()  # nothing joined: costs nothing
        zasync_conn.root()["n"] = 1
        transaction.commit()
        zasync_conn.root()["n"] = 2
        transaction.abort()
    assert counter.commits == 1
    zasync_conn.root()["n"] = 3
    transaction.commit()  # after the block: not counted
    assert counter.commits == 1


def test_run_until_idle_leaves_no_active_worker_behind(zasync_db, zasync_queue):
    zasync_queue.put(Job(operator.add, 1, 1))
    transaction.commit()
    run_until_idle(zasync_db)
    # An active record would share the queue's lanes with the next real worker.
    assert [da.activated for da in zasync_queue.dispatchers.values()] == [None]


def test_run_until_idle_raises_its_errors_in_the_callers_thread(zasync_db, zasync_queue):
    zasync_queue.put(Job(operator.add, 1, 1))
    transaction.commit()
    with pytest.raises(LookupError):
        run_until_idle(zasync_db, queue_name="no such queue")
    run_until_idle(zasync_db)
    assert all(da.activated is None for da in zasync_queue.dispatchers.values())
