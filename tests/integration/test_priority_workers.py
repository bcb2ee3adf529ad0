"""Priorities with real worker processes, on ZEO and on PostgreSQL."""

from __future__ import annotations

import operator

import pytest
import transaction

import zasync
from zasync import COMPLETED

from workers import WorkerProcess, client, wait_until

pytestmark = pytest.mark.slow


def test_a_worker_claims_higher_priorities_first(engine_uri, tmp_path):
    with client(engine_uri) as conn:
        queue = zasync.install_queues(conn)[""]
        queue.pause("filling")
        low = [queue.put(zasync.Job(operator.add, n, 0), priority=-1) for n in range(15)]
        normal = [queue.put(zasync.Job(operator.add, n, 0)) for n in range(15)]
        high = [queue.put(zasync.Job(operator.add, n, 0), priority=10) for n in range(15)]
        transaction.commit()
        worker = WorkerProcess(engine_uri, tmp_path / "worker.log", "--agent", "/main:1+0")
        try:
            worker.wait_for_log("is paused")
            queue.resume()
            transaction.commit()

            def all_done() -> bool:
                transaction.begin()
                return all(job.status == COMPLETED for job in [*low, *normal, *high])

            wait_until(all_done, message="the jobs never ran")
        finally:
            worker.stop()
        started = sorted([*low, *normal, *high], key=lambda job: job.active_start)
        assert started == [*high, *normal, *low]  # by priority, then in put order
