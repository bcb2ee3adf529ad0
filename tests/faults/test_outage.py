"""The database goes away and comes back: a worker on a real ZEO server recovers by itself.

The seeds' field bug (seed 000): "when the database went away and came back,
async didn't come back".  Here the ZEO server is stopped while a job runs,
the job's result commit meets the disconnect, the server comes back, and both
that job and a job put afterwards complete.
"""

from __future__ import annotations

import pytest
import transaction

import zasync
from zasync import COMPLETED, Job

import support
from workers import WorkerProcess, ZEOServer, client, free_port, lines, touch, wait_until

pytestmark = pytest.mark.slow


def status_of(uri, oid):
    with client(uri) as conn:
        job = conn.get(oid)
        return job.status, job.result


def test_worker_recovers_when_the_zeo_server_comes_back(tmp_path):
    server = ZEOServer(tmp_path / "Data.fs", free_port(), tmp_path / "zeo.log")
    server.start()
    worker = None
    try:
        with client(server.uri) as conn:
            zasync.install_queues(conn)
            transaction.commit()
        # the worker's client gives up on a lost server after 1 s instead of 30 s
        worker = WorkerProcess(f"{server.uri}?wait_timeout=1", tmp_path / "worker.log")
        worker.wait_for_log("worker ")
        marker, release = tmp_path / "job.started", tmp_path / "job.release"
        with client(server.uri) as conn:
            running = zasync.get_queue(conn).put(
                Job(support.wait_for_file, str(marker), str(release))
            )
            transaction.commit()
            running_oid = running._p_oid
        wait_until(lambda: lines(marker), message="job never started")

        server.stop()  # the database goes away while the job runs
        worker.wait_for_log("poll of dispatcher")  # polls fail and back off
        touch(release)  # the job finishes; its commit meets the disconnect
        worker.wait_for_log("getting retry policy for")  # waiting out the outage
        server.start()  # and comes back

        with client(server.uri) as conn:
            later = zasync.get_queue(conn).put(Job(support.multiply, 6, 7))
            transaction.commit()
            later_oid = later._p_oid
        wait_until(
            lambda: status_of(server.uri, later_oid) == (COMPLETED, 42),
            message="a job put after the outage never ran",
        )
        wait_until(
            lambda: status_of(server.uri, running_oid) == (COMPLETED, 42),
            message="the job running during the outage never completed",
        )
        worker.wait_for_log("polls work again")
        # Its policy retried the failed commit by running it again (the first
        # run's changes were rolled back); nothing was lost or left running.
        assert len(lines(marker)) == 2
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
