"""Bookkeeping that cannot succeed: each ends in a failed or quarantined job, never a loop.

Found by an adversarial pass over the quarantine and bad-job work: storing
a callback's unpicklable result, a job whose code a deploy removed while it
ran, a quota slot held by a quarantined job, awaitables raising SystemExit,
policies answering nonsense, a job closing its own connection, a slow
filter starving the pings, and operator actions on jobs that load but
cannot be written back.
"""

from __future__ import annotations

import datetime
import time
import uuid

import pytest
import transaction
import ZODB
from ZODB.FileStorage import FileStorage

import zasync
from zasync import COMPLETED, Failure, Job
from zasync.interfaces import AbortedError, RetryPolicyError
from zasync.ops import actions, views
from zasync.runtime.config import AgentSpec
from zasync.runtime.dispatcher import Dispatcher
from zasync.testing import running_dispatcher, wait_for, wait_for_poll, wait_for_result

import bad_jobs

HEALTHY = 5


def healthy_behind(queue, **options):
    jobs = [queue.put(Job(bad_jobs.healthy, n), **options) for n in range(HEALTHY)]
    transaction.commit()
    return jobs


def assert_all_healthy_done(jobs):
    assert [wait_for_result(job) for job in jobs] == [n * 2 for n in range(HEALTHY)]


def test_a_callback_whose_result_cannot_be_stored_fails_once(zasync_db, zasync_queue):
    job = zasync_queue.put(Job(bad_jobs.healthy, 1))
    callback = job.addCallback(bad_jobs.return_lambda)
    healthy = healthy_behind(zasync_queue)
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1):
        assert wait_for_result(job) == 2
        assert_all_healthy_done(healthy)
        wait_for(lambda: job.status == COMPLETED, message="the job never completed")
    assert bad_jobs.RUNS["return_lambda"] == 1
    assert isinstance(callback.result, Failure)


@pytest.mark.parametrize(
    "function", [bad_jobs.async_system_exit, bad_jobs.async_keyboard_interrupt]
)
def test_an_awaitable_raising_system_exit_fails_and_the_loop_lives_on(
    zasync_db, zasync_queue, function
):
    bad = zasync_queue.put(Job(function))
    after = [zasync_queue.put(Job(bad_jobs.async_healthy, n)) for n in range(3)]
    healthy = healthy_behind(zasync_queue)
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1):
        result = wait_for_result(bad)
        assert isinstance(result, Failure) and result.check(SystemExit, KeyboardInterrupt)
        assert [wait_for_result(job) for job in after] == [0, 2, 4]
        assert_all_healthy_done(healthy)


@pytest.mark.parametrize(
    "answer",
    [
        datetime.timedelta(days=999_999_999),
        datetime.timedelta(seconds=-5),
        [1],
        "no",
    ],
    ids=["overflowing delay", "negative delay", "a list", "a string"],
)
def test_a_policy_answering_nonsense_fails_the_job(zasync_db, zasync_queue, answer):
    bad_jobs.ANSWER["value"] = answer
    bad = zasync_queue.put(
        Job(bad_jobs.raise_value_error), retry_policy_factory=bad_jobs.AnswerPolicy
    )
    healthy = healthy_behind(zasync_queue)
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1):
        result = wait_for_result(bad)
        assert_all_healthy_done(healthy)
    assert isinstance(result, Failure) and result.check(RetryPolicyError)
    assert "the policy answered" in result.getErrorMessage()
    assert bad_jobs.RUNS["answered"] == 1


def test_an_interruption_whose_policy_answers_nonsense_fails_the_job(
    zasync_db, zasync_conn, zasync_queue
):
    bad_jobs.ANSWER["value"] = datetime.timedelta(days=999_999_999)
    job = zasync_queue.put(Job(bad_jobs.healthy, 1), retry_policy_factory=bad_jobs.AnswerPolicy)
    dead = zasync_queue.dispatchers.register(uuid.uuid4())
    dead["main"] = zasync.Agent(size=1)
    dead.activate()
    assert dead["main"].claimJob() is job
    job._status = "active"
    transaction.commit()
    dead.deactivate()  # a sibling finds the worker dead: the job is handed back
    transaction.commit()
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1):
        result = wait_for_result(job)
    assert isinstance(result, Failure) and result.check(RetryPolicyError)


def test_a_job_that_closes_its_own_connection_ends_and_the_thread_goes_on(zasync_db, zasync_queue):
    bad = zasync_queue.put(Job(bad_jobs.close_own_connection), retry_policy_factory="never")
    healthy = healthy_behind(zasync_queue)
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1) as dispatcher:
        assert_all_healthy_done(healthy)
        result = wait_for_result(bad)
        pool = dispatcher.pools[("", "main")]
        assert pool.thread_count() == 1 and pool.deaths == 0
    assert isinstance(result, Failure) and result.check(AbortedError)


def test_a_job_that_dooms_its_transaction_fails_once(zasync_db, zasync_queue):
    bad = zasync_queue.put(Job(bad_jobs.doom_own_transaction))
    healthy = healthy_behind(zasync_queue)
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1):
        result = wait_for_result(bad)
        assert_all_healthy_done(healthy)
    assert isinstance(result, Failure)
    assert bad_jobs.RUNS["doom"] == 1


def test_operators_clear_a_pending_job_that_loads_but_cannot_be_written(tmp_path):
    path = str(tmp_path / "Data.fs")
    db = ZODB.DB(FileStorage(path))
    conn = db.open()
    queue = zasync.install_queues(conn)[""]
    far = datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC)
    first = queue.put(Job(bad_jobs.healthy, bad_jobs.BecomesALock()), begin_after=far)
    second = queue.put(Job(bad_jobs.healthy, bad_jobs.BecomesALock()), begin_after=far)
    transaction.commit()
    ids = [views.job_id(first), views.job_id(second)]
    conn.close()
    db.close()
    db = ZODB.DB(FileStorage(path))  # the arguments now load as locks
    try:
        assert actions.cancel_job(db, ids[0])["outcome"] == "dropped (unloadable)"
        assert actions.remove_job(db, ids[1])["removed"] == ids[1]
        conn = db.open()
        assert len(zasync.get_queue(conn)) == 0
        conn.close()
    finally:
        db.close()


def test_a_slow_filter_does_not_make_its_worker_look_dead(zasync_db, zasync_queue):
    dispatcher = Dispatcher(
        zasync_db,
        uuid=uuid.uuid4(),
        poll_interval=0.1,
        ping_interval=0.3,
        death_interval=2.5,
        agents=(AgentSpec(threads=1, filter=bad_jobs.slow_filter),),
    )
    dispatcher.activate()
    try:
        wait_for_poll(dispatcher)
        job = zasync_queue.put(Job(bad_jobs.slow_filter_target))
        transaction.commit()
        conn = zasync_db.open()
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # the filter holds the poll for 5 s
                transaction.begin()
                assert not zasync.get_queue(conn).dispatchers[dispatcher.UUID].dead
                time.sleep(0.1)
        finally:
            conn.close()
        assert wait_for_result(job) == "filtered slowly"
    finally:
        dispatcher.stop(5)


def test_an_interrupted_job_whose_code_is_gone_is_quarantined_with_its_quota_freed(
    tmp_path, deploy
):
    gone_work = deploy.add("gone_work", "def work(n):\n    return n\n")

    path = str(tmp_path / "Data.fs")
    db = ZODB.DB(FileStorage(path))
    conn = db.open()
    queue = zasync.install_queues(conn)[""]
    queue.quotas.create("db", 1)
    job = queue.put(Job(gone_work.work, 1), quota_names=("db",))
    dead = queue.dispatchers.register(uuid.uuid4())
    dead["main"] = zasync.Agent(size=1)
    dead.activate()
    assert dead["main"].claimJob() is job  # running, holding the quota's one slot
    job._status = "active"
    transaction.commit()
    dead.deactivate()  # its worker stopped: handed back as a handleInterrupt job
    healthy = [queue.put(Job(bad_jobs.healthy, n), quota_names=("db",)) for n in range(3)]
    transaction.commit()
    ids = [job._p_oid, *(h._p_oid for h in healthy)]
    conn.close()
    db.close()

    deploy.remove("gone_work")  # the deploy removed its module

    db = ZODB.DB(FileStorage(path))
    try:
        with running_dispatcher(db, threads=1, poll_interval=0.1):
            conn = db.open()
            job, *healthy = [conn.get(oid) for oid in ids]
            assert [wait_for_result(h) for h in healthy] == [0, 2, 4]  # the quota is free
            queue = zasync.get_queue(conn)
            [entry] = queue.quarantined
            assert entry.job is job
            assert "gone_work.work cannot be imported" in entry.cause
            conn.close()
        assert actions.remove_job(db, views.job_id(job))["was"] == "quarantined"
    finally:
        db.close()
