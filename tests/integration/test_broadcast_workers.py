"""Broadcast with real worker processes, on ZEO and on PostgreSQL: each live worker runs it once."""

from __future__ import annotations

import pytest
import transaction

import zasync
from zasync import COMPLETED

from support import plain_pid
from workers import WorkerProcess, client, wait_until

pytestmark = pytest.mark.slow


def test_every_live_worker_runs_a_broadcast_job_once(engine_uri, tmp_path):
    with client(engine_uri) as conn:
        queue = zasync.install_queues(conn)[""]
        transaction.commit()
        workers = [WorkerProcess(engine_uri, tmp_path / f"worker{n}.log") for n in range(3)]
        try:

            def all_live() -> bool:
                transaction.begin()
                return len(zasync.model.broadcast.live_dispatchers(queue)) == 3

            wait_until(all_live, message="the workers never all registered")
            collector = zasync.broadcast(queue, plain_pid, 7)
            transaction.commit()

            def collected() -> bool:
                transaction.begin()
                return collector.status == COMPLETED

            wait_until(collected, message="the broadcast never completed")
            pids = {worker.process.pid for worker in workers}
            assert sorted(collector.result.values()) == sorted(pids)  # each ran its own copy
        finally:
            for worker in workers:
                worker.stop()
