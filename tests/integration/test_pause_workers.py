"""Pausing a queue that two real worker processes are draining, on ZEO and on PostgreSQL."""

from __future__ import annotations

import time

import pytest
import transaction

import zasync
from zasync import COMPLETED
from zasync.ops import actions
from zasync.storage.database import open_database

from workers import WorkerProcess, client, wait_until

pytestmark = pytest.mark.slow

JOBS = 300


def test_two_workers_leave_a_paused_queue_alone_until_it_resumes(engine_uri, tmp_path):
    with client(engine_uri) as conn:
        queue = zasync.install_queues(conn)[""]
        put = [queue.put(zasync.Job(time.sleep, 0.02)) for _ in range(JOBS)]
        transaction.commit()
        oids = [job._p_oid for job in put]

        def jobs():
            transaction.begin()
            return [conn.get(oid) for oid in oids]

        workers = [
            WorkerProcess(engine_uri, tmp_path / f"worker{i}.log", "--threads", "2")
            for i in range(2)
        ]
        try:
            wait_until(
                lambda: sum(job.status == COMPLETED for job in jobs()) >= 30,
                message="the workers never got going",
            )
            opened = open_database(engine_uri)
            try:
                paused = actions.pause_queue(opened.db, "", "integration test")
            finally:
                opened.close()
            assert paused["changed"] and paused["paused"]
            transaction.begin()
            left = {job._p_oid for job in zasync.get_queue(conn)}
            assert left, "the drain ended before the pause: make the jobs longer"
            for worker in workers:
                worker.wait_for_log("queue '' is paused")

            def claimed_all_done() -> bool:
                done = [job for job in jobs() if job._p_oid not in left]
                return all(job.status == COMPLETED for job in done)

            wait_until(claimed_all_done, message="jobs claimed before the pause never finished")
            # Every poll since the pause saw it: nothing more was claimed.
            transaction.begin()
            assert {job._p_oid for job in zasync.get_queue(conn)} == left
            assert all(conn.get(oid).active_start is None for oid in left)
            assert zasync.get_queue(conn).paused
            assert zasync.get_queue(conn).pause_reason == "integration test"

            zasync.get_queue(conn).resume()
            transaction.commit()
            wait_until(
                lambda: all(job.status == COMPLETED for job in jobs()),
                message="the jobs left by the pause never ran after the resume",
            )
            for worker in workers:
                worker.wait_for_log("queue '' resumed")
        finally:
            for worker in workers:
                worker.stop()
