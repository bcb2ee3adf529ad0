"""Catastrophes with real worker processes, real signals and real crashes.

Each scenario checks that every job ends in a final state and none is lost:
graceful stop during a job, ``kill -9`` during a job and a restart, a dead
worker's jobs taken over by a sibling, a failing callback, a callback
interrupted by a crash, and (in test_outage.py) the database going away.
"""

from __future__ import annotations

import signal

import pytest
import transaction

import zasync
from zasync import COMPLETED, AbortedError, Failure, Job, NeverRetry

import support
from workers import WorkerProcess, client, lines, touch, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def uri(tmp_path):
    return f"file://{tmp_path / 'Data.fs'}"


def put(uri, job, **options):
    with client(uri) as conn:
        queue = zasync.install_queues(conn)
        transaction.commit()
        queue = queue[""]
        queue.put(job, **options)
        transaction.commit()
        return job._p_oid


def load(uri, oid):
    """(status, result, retry data) of a job, read in a fresh client."""
    with client(uri) as conn:
        job = conn.get(oid)
        policy = job._retry_policy
        data = dict(getattr(policy, "data", {}))
        return job.status, job.result, data


def callbacks_of(uri, oid):
    with client(uri) as conn:
        return [(c.status, c.result) for c in conn.get(oid).callbacks]


def blocking_job(tmp_path, name="job"):
    marker, release = tmp_path / f"{name}.started", tmp_path / f"{name}.release"
    return Job(support.wait_for_file, str(marker), str(release)), marker, release


def release_and_restart(uri, log, oid, release, message="never completed"):
    """Release the job's body, run a worker until the job is COMPLETED; return load()."""
    touch(release)
    worker = WorkerProcess(uri, log)  # same UUID (kept beside the file)
    try:
        worker.wait_until_owner()  # before this process opens the file to look
        wait_until(lambda: load(uri, oid)[0] == COMPLETED, message=message)
    finally:
        worker.stop()
    return load(uri, oid)


def test_graceful_stop_lets_the_running_job_finish(tmp_path, uri):
    job, marker, release = blocking_job(tmp_path)
    worker = WorkerProcess(uri, tmp_path / "worker.log", "--grace", "60")
    try:
        worker.wait_for_log("worker ")
        oid = put(uri, job)
        wait_until(lambda: lines(marker), message="job never started")
        worker.signal(signal.SIGTERM)
        worker.wait_for_log("stopping gracefully")
        touch(release)
        assert worker.wait() == 0
    finally:
        worker.stop()
    status, result, _ = load(uri, oid)
    assert (status, result) == (COMPLETED, 42)
    assert len(lines(marker)) == 1


def test_stop_after_grace_interrupts_and_restart_retries(tmp_path, uri):
    job, marker, release = blocking_job(tmp_path)
    job.addCallback(support.got_result)
    log = tmp_path / "worker.log"
    worker = WorkerProcess(uri, log, "--grace", "0.5")
    try:
        worker.wait_for_log("worker ")
        oid = put(uri, job)
        wait_until(lambda: lines(marker), message="job never started")
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0  # grace over: deactivated with the job still running
    finally:
        worker.stop()
    with client(uri) as conn:
        queue = zasync.get_queue(conn)
        assert conn.get(oid).status == zasync.ACTIVE
        assert [w.callable.__name__ for w in queue] == ["handleInterrupt"]
    _, result, data = release_and_restart(uri, log, oid, release)
    assert result == 42 and data["interruptions"] == 1
    assert callbacks_of(uri, oid) == [(COMPLETED, "I got result 42")]


def test_a_restarted_embedded_worker_takes_over_its_own_record_at_once(tmp_path, uri):
    """It holds the file's lock, so its previous run is gone: no wait for the death interval."""
    slow_death = ["--ping-interval", "30", "--death-interval", "60"]
    job, marker, release = blocking_job(tmp_path)
    worker = WorkerProcess(uri, tmp_path / "worker.log", *slow_death)
    try:
        worker.wait_for_log("worker ")
        oid = put(uri, job)
        wait_until(lambda: lines(marker), message="job never started")
    finally:
        worker.kill()
    touch(release)
    restarted = WorkerProcess(uri, tmp_path / "restarted.log", *slow_death)
    try:
        restarted.wait_until_owner()  # before this process opens the file to look
        # Well inside the 60 s after which the old record would count as dead.
        wait_until(
            lambda: load(uri, oid)[0] == COMPLETED,
            timeout=40,
            message="the restarted worker waited for its own old record to die",
        )
    finally:
        restarted.stop()
    text = restarted.text()
    assert "takes over its own record" in text
    assert "another process?" not in text and " ERROR " not in text
    _, result, data = load(uri, oid)
    assert result == 42 and data["interruptions"] == 1


def test_a_second_signal_stops_at_once(tmp_path, uri):
    job, marker, release = blocking_job(tmp_path)
    log = tmp_path / "worker.log"
    worker = WorkerProcess(uri, log, "--grace", "3600")
    try:
        worker.wait_for_log("worker ")
        oid = put(uri, job)
        wait_until(lambda: lines(marker), message="job never started")
        worker.signal(signal.SIGTERM)
        worker.wait_for_log("stopping gracefully")
        worker.signal(signal.SIGINT)  # an hour of grace left: only this can end it
        worker.wait_for_log("again: stopping at once")
        assert worker.wait() == 0
    finally:
        worker.stop()
    with client(uri) as conn:
        assert conn.get(oid).status == zasync.ACTIVE  # handed back, not lost
        assert [w.callable.__name__ for w in zasync.get_queue(conn)] == ["handleInterrupt"]
    _, result, data = release_and_restart(uri, log, oid, release)
    assert result == 42 and data["interruptions"] == 1


@pytest.mark.parametrize("policy", ["default", "never"])
def test_kill_9_during_a_job_then_restart(tmp_path, uri, policy):
    job, marker, release = blocking_job(tmp_path)
    options = {"retry_policy_factory": NeverRetry} if policy == "never" else {}
    log = tmp_path / "worker.log"
    worker = WorkerProcess(uri, log)
    try:
        worker.wait_for_log("worker ")
        oid = put(uri, job, **options)
        wait_until(lambda: lines(marker), message="job never started")
        worker.kill()
    finally:
        worker.stop()
    assert load(uri, oid)[0] == zasync.ACTIVE  # the crash left it running
    _, result, data = release_and_restart(uri, log, oid, release)
    if policy == "never":
        assert isinstance(result, Failure) and result.check(AbortedError)
        assert len(lines(marker)) == 1  # not run again
    else:
        assert result == 42 and data["interruptions"] == 1
        assert len(lines(marker)) == 2  # the first run was interrupted, the second finished
    with client(uri) as conn:
        assert len(zasync.get_queue(conn)) == 0


def test_sibling_takes_over_a_dead_workers_jobs(tmp_path, uri):
    first = WorkerProcess(uri, tmp_path / "first.log", "--agent", "/main:1+0")
    second = None
    try:
        first.wait_for_log("worker ")
        job, marker, release = blocking_job(tmp_path)
        # The second worker connects through the first (which serves the file);
        # only it has a free thread when the job arrives.
        blocker, blocker_marker, blocker_release = blocking_job(tmp_path, "blocker")
        put(uri, blocker)
        wait_until(lambda: lines(blocker_marker), message="blocker never started")
        second = WorkerProcess(uri, tmp_path / "second.log", "--agent", "/main:1+0")
        second.wait_for_log("worker ")
        oid = put(uri, job)
        wait_until(lambda: lines(marker), message="job never started in the second worker")
        second.kill()
        touch(blocker_release)
        touch(release)
        first.wait_for_log("is dead; deactivating it")
        wait_until(lambda: load(uri, oid)[0] == COMPLETED, message="never taken over")
        _, result, data = load(uri, oid)
        assert result == 42 and data["interruptions"] == 1
        assert len(lines(marker)) == 2
    finally:
        if second is not None:
            second.stop()
        first.stop()


def test_failing_callback_does_not_fail_the_job(tmp_path, uri):
    job = Job(support.mock_work)
    job.addCallback(support.reject)
    job.addCallback(support.got_result)
    worker = WorkerProcess(uri, tmp_path / "worker.log")
    try:
        worker.wait_for_log("worker ")
        oid = put(uri, job)
        wait_until(lambda: load(uri, oid)[0] == COMPLETED, message="never completed")
        worker.wait_for_log("failed with traceback")
        assert "CRITICAL" in worker.text()
    finally:
        worker.stop()
    assert load(uri, oid)[1] == 42
    (failed_status, failure), ok = callbacks_of(uri, oid)
    assert failed_status == COMPLETED and failure.check(ValueError)
    assert ok == (COMPLETED, "I got result 42")


def test_callback_interrupted_by_a_crash_is_resumed(tmp_path, uri):
    marker, release = tmp_path / "cb.started", tmp_path / "cb.release"
    job = Job(support.mock_work)
    job.addCallback(Job(support.wait_for_file, str(marker), str(release)))
    log = tmp_path / "worker.log"
    worker = WorkerProcess(uri, log)
    try:
        worker.wait_for_log("worker ")
        oid = put(uri, job)
        wait_until(lambda: lines(marker), message="callback never started")
        worker.kill()
    finally:
        worker.stop()
    assert load(uri, oid)[0] == zasync.CALLBACKS
    _, result, _ = release_and_restart(uri, log, oid, release, message="callbacks never resumed")
    assert result == 42
    assert callbacks_of(uri, oid) == [(COMPLETED, 42)]
    assert len(lines(marker)) == 2  # retried by RetryCommonForever
