"""zasync on the engines several machines share: a ZEO server and RelStorage on PostgreSQL.

Every test here runs once per engine, with real worker processes, the real
command line and a fresh database (a ZEO server of its own, or a new
PostgreSQL database).
"""

from __future__ import annotations

import json
import signal

import pytest
import transaction

import zasync
from zasync import COMPLETED, AbortedError, Failure, Job, NeverRetry

import support
from processes import zasync_cli
from workers import WorkerProcess, client, lines, wait_until

pytestmark = pytest.mark.slow


def put(uri, *call, queue_name="", **options):
    """Put ``Job(*call)`` as an application does: retrying the transaction on conflicts.

    Each attempt makes its job anew: objects created in an aborted transaction
    are unusable afterwards.
    """
    with client(uri) as conn:
        for attempt in transaction.manager.attempts():
            with attempt:
                job = zasync.install_queues(conn)[queue_name].put(Job(*call), **options)
        return job._p_oid


def state(uri, oid):
    with client(uri) as conn:
        job = conn.get(oid)
        return job.status, job.result, dict(getattr(job._retry_policy, "data", {}))


def test_cli_put_worker_wait_and_status(engine_uri, tmp_path):
    worker = WorkerProcess(engine_uri, tmp_path / "worker.log", "--threads", "2")
    try:
        worker.wait_for_log("worker ")
        done = zasync_cli("--db", engine_uri, "put", "operator.mul", "6", "7", "--wait", "--json")
        assert json.loads(done.stdout)["result"] == 42
        status = json.loads(zasync_cli("--db", engine_uri, "status", "--json").stdout)
        (queue,) = status["queues"]
        (dispatcher,) = queue["dispatchers"]
        assert dispatcher["activated"] is not None
        assert [a["completed"] for a in dispatcher["agents"]] == [1]
    finally:
        worker.stop()
    assert worker.wait() == 0


def test_a_put_wakes_the_worker_long_before_its_poll_interval(engine_uri, tmp_path):
    worker = WorkerProcess(
        engine_uri, tmp_path / "worker.log", "--poll-interval", "600", "--death-interval", "1200"
    )
    try:
        worker.wait_for_log("worker ")
        oid = put(engine_uri, support.multiply, 6, 7)
        # Ten minutes between polls: only the commit's wake-up can start it.
        wait_until(lambda: state(engine_uri, oid)[0] == COMPLETED)
        assert state(engine_uri, oid)[1] == 42
    finally:
        worker.stop()


def test_two_workers_with_different_agents_share_the_work(engine_uri, tmp_path):
    reports = WorkerProcess(
        engine_uri,
        tmp_path / "reports.log",
        "--threads",
        "1",
        "--filter",
        "support:is_report",
    )
    general = WorkerProcess(
        engine_uri, tmp_path / "general.log", "--threads", "2", "--filter", "support:is_not_report"
    )
    try:
        reports.wait_for_log("worker ")
        general.wait_for_log("worker ")
        oids = [put(engine_uri, support.report_pid, i) for i in range(6)]
        oids += [put(engine_uri, support.plain_pid, i) for i in range(6)]
        wait_until(lambda: all(state(engine_uri, o)[0] == COMPLETED for o in oids))
        pids = [state(engine_uri, o)[1] for o in oids]
    finally:
        reports.stop()
        general.stop()
    assert set(pids[:6]) == {reports.process.pid}  # each filter takes only its own jobs
    assert set(pids[6:]) == {general.process.pid}


@pytest.mark.parametrize("policy", ["default", "never"])
def test_kill_9_and_restart(engine_uri, tmp_path, policy):
    marker, release = tmp_path / "started", tmp_path / "release"
    options = {"retry_policy_factory": NeverRetry} if policy == "never" else {}
    log = tmp_path / "worker.log"
    worker = WorkerProcess(engine_uri, log)
    try:
        worker.wait_for_log("worker ")
        oid = put(engine_uri, support.wait_for_file, str(marker), str(release), **options)
        # Its line, not the file: the file exists a moment before the line is written.
        wait_until(lambda: lines(marker), message="job never started")
        worker.kill()
    finally:
        worker.stop()
    release.write_text("go")
    worker = WorkerProcess(engine_uri, log)
    try:
        wait_until(lambda: state(engine_uri, oid)[0] == COMPLETED)
    finally:
        worker.signal(signal.SIGTERM)
        worker.wait()
    _, result, data = state(engine_uri, oid)
    if policy == "never":
        assert isinstance(result, Failure) and result.check(AbortedError)
        assert len(marker.read_text().split()) == 1  # not run again
    else:
        assert result == 42 and data["interruptions"] == 1
        assert len(marker.read_text().split()) == 2
