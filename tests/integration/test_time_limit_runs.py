"""Run-time limits in a real dispatcher: stopped on time, nothing committed, slot freed."""

from __future__ import annotations

import logging
import uuid

import pytest
import transaction

import zasync
from zasync import COMPLETED, Failure, Job
from zasync.ops import live
from zasync.runtime import dispatcher as dispatcher_module
from zasync.runtime.config import AgentSpec
from zasync.testing import running_dispatcher, wait_for, wait_for_result

import support


@pytest.fixture(autouse=True)
def _clean_registry():
    support.after_limit.clear()
    yield
    for d in list(dispatcher_module._registry.values()):
        if d.activated:
            d.stop(5)
    dispatcher_module.clear()


def _pool(dispatcher):
    return dispatcher.pools[("", "main")]


def _root_keys(conn):
    transaction.begin()
    return set(conn.root().keys())


def test_a_job_running_python_code_past_its_limit_fails_and_commits_nothing(
    zasync_db, zasync_conn, zasync_queue
):
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1) as dispatcher:
        slow = zasync_queue.put(Job(support.write_then_spin, "spun"), timeout=0.5)
        told = slow.addCallback(Job(support.outcome_name))
        after = zasync_queue.put(Job(support.multiply, 6, 7))
        transaction.commit()
        result = wait_for_result(slow)
        assert isinstance(result, Failure) and result.check(zasync.TimeLimitError)
        assert "time limit of 0.5 s" in result.getErrorMessage()
        # The one thread's slot is free again: the next job runs.
        assert wait_for_result(after) == 42
        assert wait_for_result(told) == "zasync.errors.TimeLimitError"  # its callback ran
        assert "spun" not in _root_keys(zasync_conn)
        assert slow.status == COMPLETED
        pool = _pool(dispatcher)
        assert pool.timed_out == 1
        # Pure Python code is interrupted: the thread comes back and leaves.
        wait_for(lambda: pool.abandoned_threads() == 0, sync=None)
        assert pool.thread_count() == 1


def test_a_job_blocked_in_c_is_failed_on_time_and_its_late_commit_refused(
    zasync_db, zasync_conn, zasync_queue
):
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1) as dispatcher:
        stuck = zasync_queue.put(Job(support.write_then_block, "blocked", "tl-c"), timeout=0.5)
        transaction.commit()
        result = wait_for_result(stuck)
        assert result.check(zasync.TimeLimitError)
        pool = _pool(dispatcher)
        # Counted out just after the commit that failed it; still inside the C call.
        wait_for(lambda: pool.abandoned_threads() == 1, sync=None)
        shown = live.status(dispatcher)["pools"][0]
        assert (shown["timed out"], shown["abandoned threads"]) == (1, 1)
        # Meanwhile the agent's one slot runs other jobs, in a new thread.
        later = zasync_queue.put(Job(support.multiply, 3, 5))
        transaction.commit()
        assert wait_for_result(later) == 15
        assert pool.wait_idle(60)  # its stop is handled: the interruption was called off
        support.event("tl-c").set()  # the C call returns: its commit must be refused
        wait_for(lambda: pool.abandoned_threads() == 0, sync=None)
        # The interruption was called off while it sat in C (it would slow every
        # thread); its code goes on when the call returns, but cannot commit.
        assert support.after_limit == ["tl-c: commit refused: DoomedTransaction"]
        keys = _root_keys(zasync_conn)
        assert "blocked" not in keys and "blocked-after" not in keys
        assert stuck.result.check(zasync.TimeLimitError)  # still the recorded outcome


def test_a_job_that_swallows_the_interrupt_cannot_commit(zasync_db, zasync_conn, zasync_queue):
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1) as dispatcher:
        job = zasync_queue.put(Job(support.swallow_limit_then_commit, "swallowed"), timeout=0.5)
        transaction.commit()
        assert wait_for_result(job).check(zasync.TimeLimitError)
        wait_for(lambda: _pool(dispatcher).abandoned_threads() == 0, sync=None)
        # However its code was stopped, its commit after the stop was refused.
        assert support.after_limit[-1] == "swallowed: commit refused: DoomedTransaction"
        assert "swallowed: committed" not in support.after_limit
        assert "swallowed" not in _root_keys(zasync_conn)


def test_a_job_within_its_limit_is_not_touched(zasync_db, zasync_queue):
    with running_dispatcher(zasync_db, threads=2, poll_interval=0.1) as dispatcher:
        jobs = [zasync_queue.put(Job(support.multiply, n, 2), timeout=60) for n in range(20)]
        transaction.commit()
        assert [wait_for_result(job) for job in jobs] == [2 * n for n in range(20)]
        assert _pool(dispatcher).timed_out == 0


def test_the_agent_default_applies_to_jobs_put_without_a_limit(
    zasync_db, zasync_conn, zasync_queue
):
    spec = AgentSpec(threads=1, timeout=0.5)
    with running_dispatcher(zasync_db, agents=[spec], poll_interval=0.1):
        spinning = zasync_queue.put(Job(support.write_then_spin, "agent-default"))
        own = zasync_queue.put(Job(support.sleep_then, 1.0, "slept"), timeout=30)
        transaction.commit()
        assert wait_for_result(spinning).check(zasync.TimeLimitError)
        assert wait_for_result(own) == "slept"  # its own limit comes first


def test_the_queue_default_applies_when_the_agent_has_none(zasync_db, zasync_conn, zasync_queue):
    zasync_queue.default_timeout = 0.5
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1):
        spinning = zasync_queue.put(Job(support.write_then_spin, "queue-default"))
        transaction.commit()
        assert wait_for_result(spinning).check(zasync.TimeLimitError)
    assert "queue-default" not in _root_keys(zasync_conn)


def test_a_retry_policy_can_retry_a_job_that_ran_out_of_time(zasync_db, zasync_queue, tmp_path):
    marker = tmp_path / "first-attempt"
    declared = zasync.Retry(attempts=2, on=(zasync.TimeLimitError,), backoff=0.1, jitter=0)
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1):
        job = zasync_queue.put(
            Job(support.slow_first_attempt, str(marker), "retried"), timeout=0.5, retry=declared
        )
        transaction.commit()
        assert wait_for_result(job) == "second attempt"
        (attempt,) = job.failed_attempts
        assert "TimeLimitError" in attempt.error


def test_cancelling_a_time_limited_job_still_works(zasync_db, zasync_queue):
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1):
        job = zasync_queue.put(Job(support.until_cancelled, "tl-cancel"), timeout=120)
        transaction.commit()
        wait_for(lambda: support.event("tl-cancel-started").is_set(), sync=None)
        transaction.begin()
        assert zasync.cancel(job, "enough") == "requested"
        result = wait_for_result(job)
        assert result.check(zasync.CancelledError)


def test_the_worker_log_says_what_happened_in_one_warning(zasync_db, zasync_queue, caplog):
    caplog.set_level(logging.WARNING, logger="zasync.events")
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1):
        job = zasync_queue.put(Job(support.write_then_spin, "logged"), timeout=0.5)
        transaction.commit()
        wait_for_result(job)
        wait_for(lambda: "stopped: the job ran longer" in caplog.text, sync=None)
    lines = [r for r in caplog.records if "stopped: the job ran longer" in r.getMessage()]
    assert len(lines) == 1
    assert "nothing it changed was committed" in lines[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.CRITICAL]


def test_a_batch_agent_refuses_a_default_time_limit():
    with pytest.raises(ValueError, match="batch agent"):
        AgentSpec(batch=10, timeout=5)


def test_a_job_with_a_limit_in_a_batch_agent_runs_alone(zasync_db, zasync_conn, zasync_queue):
    spec = AgentSpec(threads=1, prefetch=8, batch=8)
    with running_dispatcher(zasync_db, agents=[spec], poll_interval=0.1, uuid_=uuid.uuid4()):
        quick = [zasync_queue.put(Job(support.multiply, n, 3)) for n in range(6)]
        spinning = zasync_queue.put(Job(support.write_then_spin, "in-batch"), timeout=0.5)
        transaction.commit()
        assert wait_for_result(spinning).check(zasync.TimeLimitError)
        assert [wait_for_result(job) for job in quick] == [3 * n for n in range(6)]
    assert "in-batch" not in _root_keys(zasync_conn)


def test_the_dashboard_shows_the_limit_and_the_failure(zasync_db, zasync_conn, zasync_queue):
    from zasync.ops import views
    from zasync.web import make_app

    zasync_queue.default_timeout = 600
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1):
        job = zasync_queue.put(Job(support.write_then_spin, "web"), timeout=0.5)
        transaction.commit()
        wait_for_result(job)
    web = make_app(zasync_db, "token").test_client()
    page = web.get(f"/jobs/{views.job_id(job)}").get_data(as_text=True)
    assert 'id="timeout">0.5 s' in page and "TimeLimitError" in page
    assert web.get(f"/api/jobs/{views.job_id(job)}").get_json()["timeout"] == 0.5
    overview = web.get("/").get_data(as_text=True)
    assert 'class="default-timeout">time limit 600 s' in overview


def test_a_thread_stopped_while_its_retry_policy_waits_comes_back_and_leaves(
    zasync_db, zasync_queue
):
    """The default policy waits 5 s after a disconnect: the job is stopped meanwhile."""
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1) as dispatcher:
        job = zasync_queue.put(Job(support.lose_the_database), timeout=0.5)
        transaction.commit()
        assert wait_for_result(job).check(zasync.TimeLimitError)
        pool = _pool(dispatcher)
        wait_for(lambda: pool.abandoned_threads() == 0, sync=None)  # back after its wait
        assert pool.running == 0 and pool.timed_out == 1


def test_two_limited_jobs_in_one_batch_keep_the_counts_right(zasync_db, zasync_queue):
    spec = AgentSpec(threads=1, prefetch=8, batch=8)
    size_before = zasync_db.getPoolSize()
    with running_dispatcher(zasync_db, agents=[spec], poll_interval=0.1) as dispatcher:
        size_running = zasync_db.getPoolSize()
        spinning = [
            zasync_queue.put(Job(support.write_then_spin, f"batch-{n}"), timeout=0.5)
            for n in range(2)
        ]
        quick = [zasync_queue.put(Job(support.multiply, n, 5)) for n in range(4)]
        transaction.commit()
        for job in spinning:
            assert wait_for_result(job).check(zasync.TimeLimitError)
        assert [wait_for_result(job) for job in quick] == [5 * n for n in range(4)]
        pool = _pool(dispatcher)
        wait_for(lambda: pool.abandoned_threads() == 0 and pool.running == 0, sync=None)
        assert pool.wait_idle(30)
        assert zasync_db.getPoolSize() == size_running
    assert zasync_db.getPoolSize() == size_before


def test_a_job_waiting_for_the_job_it_returned_is_not_stopped(zasync_db, zasync_queue):
    """The limit covers the job's own run, not the wait for a job it returned."""
    with running_dispatcher(zasync_db, threads=2, poll_interval=0.1) as dispatcher:
        outer = zasync_queue.put(Job(support.return_a_slow_inner_job, 1.5), timeout=0.5)
        transaction.commit()
        assert wait_for_result(outer) == "inner done"
        assert _pool(dispatcher).timed_out == 0


def test_a_job_started_by_its_own_commit_is_stopped_too(zasync_db, zasync_conn, zasync_queue):
    """``retry_policy_factory='never'`` starts a job with a commit of its own (``job()``)."""
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1):
        job = zasync_queue.put(
            Job(support.write_then_spin, "never"), timeout=0.01, retry_policy_factory="never"
        )
        transaction.commit()
        assert wait_for_result(job).check(zasync.TimeLimitError)
    assert "never" not in _root_keys(zasync_conn)


def test_zasync_own_jobs_take_no_default_limit(zasync_conn, zasync_queue):
    from zasync.model.patterns import serial
    from zasync.model.timelimit import limit_for

    zasync_queue.default_timeout = 1
    schedule = zasync.add_schedule(zasync_queue, "beat", support.multiply, 2, 3, every=60)
    trigger = schedule._trigger
    assert limit_for(trigger, agent_default=2) is None
    chain = zasync_queue.put(serial(Job(support.multiply, 1, 2)))
    assert limit_for(chain, agent_default=None) is None
    assert limit_for(zasync_queue.put(Job(support.multiply, 1, 2)), None) == 1


def test_a_graceful_stop_waits_for_the_callbacks_of_a_stopped_job(
    zasync_db, zasync_queue, tmp_path
):
    runs = tmp_path / "callback-runs"
    with running_dispatcher(zasync_db, threads=1, poll_interval=0.1) as dispatcher:
        job = zasync_queue.put(Job(support.write_then_spin, "cb"), timeout=0.3)
        callback = job.addCallback(Job(support.append_then_sleep, str(runs), 1.5))
        transaction.commit()
        wait_for(lambda: runs.exists(), sync=None)  # the callback started
        assert dispatcher.stop(30) is True
    transaction.begin()
    assert callback.result == "called back" and job.result.check(zasync.TimeLimitError)
    assert runs.read_text() == "ran\n"  # once


def test_a_callback_added_while_a_job_runs_does_not_make_it_run_again(
    zasync_db, zasync_queue, tmp_path
):
    """The job returns a job: its result commit must merge with the callback, not conflict."""
    runs = tmp_path / "runs"
    with running_dispatcher(zasync_db, threads=2, poll_interval=0.1):
        outer = zasync_queue.put(Job(support.return_inner_job_when_released, "late-cb", str(runs)))
        transaction.commit()
        wait_for(lambda: support.event("late-cb-started").is_set(), sync=None)
        transaction.begin()
        told = outer.addCallback(Job(support.outcome_name))
        transaction.commit()
        support.event("late-cb").set()
        assert wait_for_result(outer) == 6
        assert wait_for_result(told) == "succeeded"
    assert runs.read_text() == "ran\n"
