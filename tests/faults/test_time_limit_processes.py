"""Time-limited jobs in real worker processes, killed with SIGKILL: their changes never commit.

Each job notes its start in a file (outside the database), writes to the
database, then either sleeps in one long C call, where no exception can
reach it, or keeps writing and committing, ignoring every error.  With a
limit of one second, each is failed with TimeLimitError by its worker.

* Killed *after* the stop, while the abandoned threads still sleep: the next
  worker finds every job failed, runs none of them again, and the database
  holds nothing any of them wrote.
* Killed *before* the limit: the jobs are recovered as interrupted, run
  again on the next worker (the default retry policy), and stopped there.
  Still nothing they wrote is stored.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
import transaction

import zasync
from zasync import COMPLETED, Job

from support import multiply, note_start_write_then_commit_in_a_loop, note_start_write_then_sleep
from workers import WorkerProcess, client, lines, wait_until

pytestmark = pytest.mark.slow

JOBS = 4


def _put(uri, starts, limit):
    with client(uri) as conn:
        queue = zasync.install_queues(conn)[""]
        jobs = [
            queue.put(Job(note_start_write_then_sleep, f"slept-{n}", str(starts)), timeout=limit)
            for n in range(JOBS)
        ] + [
            queue.put(
                Job(note_start_write_then_commit_in_a_loop, f"looped-{n}", str(starts)),
                timeout=limit,
            )
            for n in range(JOBS)
        ]
        transaction.commit()
        return [job._p_oid for job in jobs]


def _outcomes(uri, oids):
    with client(uri) as conn:
        jobs = [conn.get(oid) for oid in oids]
        written = sorted(
            str(key) for key in conn.root() if str(key).startswith(("slept-", "looped-"))
        )
        return [(job.status, job.result) for job in jobs], written


def _wait_until_completed(uri, oids, message):
    wait_until(
        lambda: all(status == COMPLETED for status, _ in _outcomes(uri, oids)[0]),
        message=message,
    )


def _assert_stopped_and_nothing_written(uri, oids):
    outcomes, written = _outcomes(uri, oids)
    assert all(result.check(zasync.TimeLimitError) for _, result in outcomes), outcomes
    assert written == []


def _probe(uri):
    """Put a job and wait for a worker to run it."""
    with client(uri) as conn:
        probe = zasync.get_queues(conn)[""].put(Job(multiply, 2, 21))
        transaction.commit()

        def done() -> bool:
            transaction.begin()
            return probe.status == COMPLETED

        wait_until(done, message="the worker never ran a job")
        assert probe.result == 42


def _worker(uri, tmp_path, name):
    return WorkerProcess(
        uri, tmp_path / f"{name}.log", "--threads", str(2 * JOBS), "--uuid", str(uuid.uuid4())
    )


def test_jobs_stopped_at_their_limit_stay_failed_after_their_worker_is_killed(engine_uri, tmp_path):
    starts = tmp_path / "starts"
    oids = _put(engine_uri, starts, limit=1)
    first = _worker(engine_uri, tmp_path, "first")
    try:
        _wait_until_completed(engine_uri, oids, "the jobs past their limit were never stopped")
        wait_until(
            lambda: first.own_text().count("stopped: the job ran longer") == 2 * JOBS,
            message="not one stop line per job",
        )
    finally:
        first.kill()  # the sleeping threads are still alive: kill -9 them with it
    second = _worker(engine_uri, tmp_path, "second")
    try:
        _probe(engine_uri)  # the new worker polled and claimed: it would have rerun them
        _assert_stopped_and_nothing_written(engine_uri, oids)
        assert sorted(Counter(lines(starts)).values()) == [1] * (2 * JOBS)  # none ran again
    finally:
        second.stop()


def test_jobs_killed_before_their_limit_run_again_and_are_stopped_again(engine_uri, tmp_path):
    starts = tmp_path / "starts"
    oids = _put(engine_uri, starts, limit=10)
    first = _worker(engine_uri, tmp_path, "first")
    try:
        wait_until(lambda: len(lines(starts)) == 2 * JOBS, message="the jobs never all started")
    finally:
        first.kill()
    second = _worker(engine_uri, tmp_path, "second")
    try:
        _wait_until_completed(engine_uri, oids, "the recovered jobs never finished")
        _assert_stopped_and_nothing_written(engine_uri, oids)
        assert sorted(Counter(lines(starts)).values()) == [2] * (2 * JOBS)  # once per worker
    finally:
        second.stop()
