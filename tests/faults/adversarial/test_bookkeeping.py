"""Bookkeeping beside a running job never makes it run again (issue 10, item 6).

Reading its own annotations while another connection sets a live
annotation, or a callback added while it stores its result, used to make a
job's result commit conflict, and its retry policy ran the whole job again:
effects outside the database twice.
"""

from __future__ import annotations

import uuid

import transaction

from zasync import COMPLETED, Job
from zasync.runtime.config import AgentSpec
from zasync.runtime.dispatcher import Dispatcher
from zasync.runtime.records import PollInfo, Records
from zasync.testing import running_dispatcher, wait_for, wait_for_poll, wait_for_result

import bad_jobs
import support


def start_blocked(db, queue, name, **options):
    job = queue.put(Job(bad_jobs.count_then_block, name, **options))
    transaction.commit()
    return job


def test_reading_annotations_while_a_live_one_is_set_does_not_rerun_the_job(
    zasync_db, zasync_conn, zasync_queue
):
    job = start_blocked(zasync_db, zasync_queue, "reader", read_annotations=True)
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1):
        assert support.event("reader-started").wait(60)
        transaction.begin()
        job.annotations["live"] = "from outside"  # another connection, as setLiveAnnotation
        transaction.commit()
        support.event("reader").set()
        result = wait_for_result(job)
    assert bad_jobs.RUNS["reader"] == 1
    assert result.startswith("saw ")
    transaction.begin()
    assert job.annotations["live"] == "from outside"  # the live annotation survived
    assert job._retry_policy is None or not dict(job._retry_policy.data)


def test_a_callback_added_while_the_job_stores_its_result_runs_and_the_job_does_not(
    zasync_db, zasync_conn, zasync_queue
):
    job = start_blocked(zasync_db, zasync_queue, "late")
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1):
        assert support.event("late-started").wait(60)
        transaction.begin()
        callback = job.addCallback(bad_jobs.record_result)  # commits first
        transaction.commit()
        support.event("late").set()
        assert wait_for_result(job) == "done"
        wait_for(lambda: callback.status == COMPLETED, message="the late callback never ran")
        wait_for(lambda: job.status == COMPLETED, message="the job never completed")
    assert bad_jobs.RUNS == {"late": 1, "callback": 1}
    assert callback.result == "callback got 'done'"


def test_reading_annotations_never_writes_the_job(zasync_conn, zasync_queue):
    job = zasync_queue.put(Job(bad_jobs.healthy, 1))
    transaction.commit()
    assert dict(job.annotations) == {} and "x" not in job.annotations
    assert job.annotations.get("x") is None and len(job.annotations) == 0
    assert not job._p_changed
    job.annotations["x"] = 1
    assert job._p_changed and job.annotations["x"] == 1
    del job.annotations["x"]
    assert list(job.annotations) == []


def test_poll_count_counts_past_the_kept_polls():
    records = Records(polls_size=3)
    for _ in range(10):
        records.add_poll(PollInfo(), [])
    assert records.poll_count() == 10
    assert len(list(records.iter_polls())) == 3


def test_wait_for_poll_works_after_the_poll_records_are_full(zasync_db, zasync_queue):
    dispatcher = Dispatcher(
        zasync_db, uuid=uuid.uuid4(), poll_interval=0.01, agents=(AgentSpec(),), polls_size=3
    )
    dispatcher.activate()
    try:
        for _ in range(8):  # more polls than are kept
            wait_for_poll(dispatcher, timeout=240)
        assert dispatcher.records.poll_count() >= 8
    finally:
        dispatcher.stop(5)
