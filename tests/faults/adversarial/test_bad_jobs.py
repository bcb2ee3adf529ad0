"""Bad jobs: whatever a job raises, returns or asks of its policy, it ends, and the rest run.

Each case puts one bad job first and healthy jobs behind it, into a worker
with a single thread: a bad job that killed its thread, or wedged it, would
leave every healthy job unrun.
"""

from __future__ import annotations

import datetime
import threading
import uuid

import pytest
import transaction

import zasync
from zasync import COMPLETED, AbortedError, Failure, Job, TimeoutError, clock
from zasync.interfaces import RetryPolicyError, UnknownRetryPolicyError, ZasyncError
from zasync.model import retry
from zasync.model.job import POLICY_TRIES
from zasync.ops import queries, views
from zasync.runtime import dispatcher as dispatcher_module
from zasync.testing import running_dispatcher, wait_for, wait_for_result

import bad_jobs

HEALTHY = 5


def put_with_healthy(queue, bad, **options):
    bad_job = queue.put(bad, **options)
    healthy = [queue.put(Job(bad_jobs.healthy, n)) for n in range(HEALTHY)]
    transaction.commit()
    return bad_job, healthy


def run_all(db, bad_job, healthy):
    """Run with one thread; return the bad job's result once every job is done."""
    with running_dispatcher(db, threads=1, poll_interval=0.1) as dispatcher:
        result = wait_for_result(bad_job)
        assert [wait_for_result(job) for job in healthy] == [n * 2 for n in range(HEALTHY)]
        pool = dispatcher.pools[("", "main")]
        assert [t.is_alive() for t in pool.threads] == [True]
        assert pool.deaths == 0
    return result


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        (bad_jobs.raise_system_exit, SystemExit),
        (bad_jobs.raise_keyboard_interrupt, KeyboardInterrupt),
        (bad_jobs.raise_generator_exit, GeneratorExit),
        (bad_jobs.raise_custom_base, bad_jobs.CustomBaseError),
        (bad_jobs.raise_with_bad_str, bad_jobs.BadStrError),
    ],
    ids=["SystemExit", "KeyboardInterrupt", "GeneratorExit", "custom BaseException", "bad str"],
)
def test_a_job_raising_any_base_exception_fails_and_the_thread_goes_on(
    zasync_db, zasync_queue, function, expected
):
    bad_job, healthy = put_with_healthy(zasync_queue, Job(function))
    result = run_all(zasync_db, bad_job, healthy)
    assert isinstance(result, Failure)
    assert result.check(expected)
    assert bad_job.status == COMPLETED


def test_a_result_whose_repr_raises_is_kept_and_the_thread_goes_on(zasync_db, zasync_queue):
    bad_job, healthy = put_with_healthy(zasync_queue, Job(bad_jobs.return_bad_repr))
    result = run_all(zasync_db, bad_job, healthy)
    assert isinstance(result, bad_jobs.BadRepr)


def test_a_huge_result_is_stored_whole_but_recorded_short(zasync_db, zasync_queue):
    bad_job, healthy = put_with_healthy(zasync_queue, Job(bad_jobs.return_huge))
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1) as dispatcher:
        assert len(wait_for_result(bad_job)) == 5_000_000
        for job in healthy:
            wait_for_result(job)
        record = dispatcher.getJobInfo(int.from_bytes(bad_job._p_oid, "big"))
    assert len(record["result"]) < 20_000


def test_a_job_returning_a_job_no_queue_holds_fails_saying_so(zasync_db, zasync_queue):
    bad_job, healthy = put_with_healthy(zasync_queue, Job(bad_jobs.return_unqueued_job))
    result = run_all(zasync_db, bad_job, healthy)
    assert isinstance(result, Failure) and result.check(ZasyncError)
    assert "no queue holds" in result.getErrorMessage()


def test_a_job_returning_itself_fails_saying_so(zasync_db, zasync_queue):
    bad_job, healthy = put_with_healthy(zasync_queue, Job.bind(bad_jobs.return_self))
    result = run_all(zasync_db, bad_job, healthy)
    assert isinstance(result, Failure) and "returned itself" in result.getErrorMessage()


def test_keyboard_interrupt_in_the_main_thread_still_stops_a_script(zasync_conn, zasync_queue):
    # Ctrl-C while a script runs a job in its main thread must stop the script.
    assert threading.current_thread() is threading.main_thread()
    job = Job(bad_jobs.raise_keyboard_interrupt)
    zasync_conn.root()["job"] = job
    transaction.commit()
    with pytest.raises(KeyboardInterrupt):
        job()


# -- retry policies ------------------------------------------------------------------


def test_put_refuses_an_unknown_policy_name_listing_the_known_ones(zasync_queue):
    before = len(zasync_queue)
    with pytest.raises(UnknownRetryPolicyError, match="registered: common, forever, never"):
        zasync_queue.put(Job(bad_jobs.healthy, 1), retry_policy_factory="no-such-policy")
    job = Job(bad_jobs.healthy, 1)
    job.retry_policy_factory = "no-such-policy"
    with pytest.raises(UnknownRetryPolicyError):
        zasync_queue.put(job)
    assert len(zasync_queue) == before
    assert job._p_jar is None


def test_callbacks_refuse_an_unknown_policy_name(zasync_queue):
    job = zasync_queue.put(Job(bad_jobs.healthy, 1))
    with pytest.raises(UnknownRetryPolicyError):
        job.addCallback(Job(bad_jobs.healthy), retry_policy_factory="nope")
    with pytest.raises(UnknownRetryPolicyError):
        job.addCallbacks(Job(bad_jobs.healthy), retry_policy_factory="nope")
    assert job.callbacks == ()


def test_builtin_policy_names_work(zasync_db, zasync_queue):
    bad_job, healthy = put_with_healthy(
        zasync_queue, Job(bad_jobs.raise_value_error), retry_policy_factory="never"
    )
    result = run_all(zasync_db, bad_job, healthy)
    assert result.check(ValueError)
    assert type(bad_job.getRetryPolicy()).__name__ == "NeverRetry"


def test_a_policy_that_raises_fails_the_job_after_a_bounded_number_of_tries(
    zasync_db, zasync_queue
):
    bad_jobs.POLICY_CALLS.clear()
    bad_job, healthy = put_with_healthy(
        zasync_queue, Job(bad_jobs.raise_value_error), retry_policy_factory=bad_jobs.RaisingPolicy
    )
    result = run_all(zasync_db, bad_job, healthy)
    assert result.check(RetryPolicyError)
    assert "ValueError" in result.getErrorMessage()  # the error it was deciding on
    assert "policy bug" in result.getTraceback()
    assert bad_jobs.POLICY_CALLS == ["jobError"] * POLICY_TRIES


def test_a_policy_that_raises_system_exit_fails_the_job(zasync_db, zasync_queue):
    bad_job, healthy = put_with_healthy(
        zasync_queue, Job(bad_jobs.raise_value_error), retry_policy_factory=bad_jobs.ExitingPolicy
    )
    result = run_all(zasync_db, bad_job, healthy)
    assert result.check(RetryPolicyError)
    assert "SystemExit" in result.getErrorMessage()


def test_a_policy_factory_that_raises_fails_the_job(zasync_db, zasync_queue):
    bad_job, healthy = put_with_healthy(
        zasync_queue,
        Job(bad_jobs.raise_value_error),
        retry_policy_factory=bad_jobs.broken_policy_factory,
    )
    result = run_all(zasync_db, bad_job, healthy)
    assert result.check(RetryPolicyError)
    assert "factory bug" in result.getErrorMessage()


def test_a_policy_name_unknown_to_the_worker_fails_the_job(zasync_db, zasync_queue):
    zasync.register_retry_policy("only-at-put", bad_jobs.RaisingPolicy)
    bad_job = zasync_queue.put(Job(bad_jobs.raise_value_error), retry_policy_factory="only-at-put")
    healthy = [zasync_queue.put(Job(bad_jobs.healthy, n)) for n in range(HEALTHY)]
    transaction.commit()
    retry.unregister_retry_policy("only-at-put")  # the worker never registered it
    result = run_all(zasync_db, bad_job, healthy)
    assert result.check(RetryPolicyError)
    assert "only-at-put" in result.getErrorMessage()


def test_an_interruption_whose_policy_raises_fails_the_job(zasync_conn, zasync_queue):
    bad_jobs.POLICY_CALLS.clear()
    job = zasync_queue.put(Job(bad_jobs.healthy, 1), retry_policy_factory=bad_jobs.RaisingPolicy)
    transaction.commit()
    zasync_queue.remove(job)
    job._status = "active"  # as a worker that died mid-run leaves it
    zasync_conn.root()["job"] = job
    transaction.commit()
    job.handleInterrupt()
    assert job.status == COMPLETED
    assert job.result.check(RetryPolicyError)
    assert bad_jobs.POLICY_CALLS == ["interrupted"]


# -- finished by another job: listed with their outcome --------------------------------


def failed_ids(db):
    conn = db.open()
    try:
        found = queries.list_jobs(conn, queries.make_filter("failed"), limit=None)
        counted = queries.count_jobs(conn, queries.make_filter("failed"))
    finally:
        conn.close()
    assert counted == len(found)
    return {entry["id"] for entry in found}


def test_a_job_aborted_after_its_worker_died_is_listed_as_failed(
    zasync_db, zasync_conn, zasync_queue
):
    job = zasync_queue.put(Job(bad_jobs.healthy, 1), retry_policy_factory="never")
    dead = zasync_queue.dispatchers.register(uuid.uuid4())
    dead["main"] = zasync.Agent(size=1)
    dead.activate()
    assert dead["main"].claimJob() is job
    job._status = "active"  # it was running when its worker died
    transaction.commit()
    dead.deactivate()  # as a sibling does once the dead worker's pings stop
    transaction.commit()
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1):
        assert wait_for_result(job).check(AbortedError)
    assert views.job_id(job) in failed_ids(zasync_db)


def test_a_job_that_missed_its_deadline_is_listed_as_failed(zasync_db, zasync_queue):
    an_hour_ago = clock.utcnow() - datetime.timedelta(hours=1)
    job = zasync_queue.put(
        Job(bad_jobs.healthy, 1), begin_after=an_hour_ago, begin_by=datetime.timedelta(minutes=1)
    )
    transaction.commit()
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1):
        assert wait_for_result(job).check(TimeoutError)
    assert views.job_id(job) in failed_ids(zasync_db)


def test_a_thread_that_dies_anyway_is_replaced_and_shown(zasync_db, zasync_queue, monkeypatch):
    from zasync.ops import live

    real_job_done = dispatcher_module.Dispatcher.job_done
    calls = []

    def job_done_once_fatal(self, pool):
        calls.append(pool)
        if len(calls) == 1:
            raise SystemExit("zasync's own bug, outside any job")
        real_job_done(self, pool)

    monkeypatch.setattr(dispatcher_module.Dispatcher, "job_done", job_done_once_fatal)
    first, healthy = put_with_healthy(zasync_queue, Job(bad_jobs.healthy, 100))
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1) as dispatcher:
        assert wait_for_result(first) == 200
        assert [wait_for_result(job) for job in healthy] == [n * 2 for n in range(HEALTHY)]
        pool = dispatcher.pools[("", "main")]
        assert pool.deaths == 1 and pool.thread_count() == 1
        assert live.status(dispatcher)["pools"][0]["thread deaths"] == 1
        conn = zasync_db.open()
        try:
            wait_for(
                lambda: [d["thread_deaths"] for d in queries.dispatchers(conn)] == [1],
                message="the death never reached the database",
            )
        finally:
            conn.close()


def test_a_callback_whose_code_is_gone_is_skipped_and_the_job_completes(tmp_path, deploy):
    import ZODB
    from ZODB.FileStorage import FileStorage

    from zasync.model.job import UNRUNNABLE_CALLBACKS

    gone_callbacks = deploy.add("gone_callbacks", "def note(result):\n    return result\n")

    path = str(tmp_path / "Data.fs")
    db = ZODB.DB(FileStorage(path))
    conn = db.open()
    queue = zasync.install_queues(conn)[""]
    job = queue.put(Job(bad_jobs.healthy, 1))
    job.addCallback(gone_callbacks.note)
    sound = job.addCallback(bad_jobs.healthy)
    healthy = [queue.put(Job(bad_jobs.healthy, n)) for n in range(HEALTHY)]
    transaction.commit()
    oids = [job._p_oid, sound._p_oid, *(h._p_oid for h in healthy)]
    conn.close()
    db.close()

    deploy.remove("gone_callbacks")  # a deploy removed the callback's module

    db = ZODB.DB(FileStorage(path))
    try:
        with running_dispatcher(db, threads=1, poll_interval=0.1):
            conn = db.open()
            job, sound, *healthy = [conn.get(oid) for oid in oids]
            assert wait_for_result(job) == 2
            assert [wait_for_result(h) for h in healthy] == [n * 2 for n in range(HEALTHY)]
            wait_for(lambda: job.status == COMPLETED, message="the job never completed")
            assert sound.result == 4
            [(_callback_id, cause)] = job.get_annotation(UNRUNNABLE_CALLBACKS)
            assert "gone_callbacks.note cannot be imported" in cause
            conn.close()
    finally:
        db.close()
