"""Tasks put through ``task.put`` run in real worker processes, on ZEO and on PostgreSQL."""

from __future__ import annotations

import pytest
import transaction

import zasync
from task_examples import double, report
from zasync import COMPLETED

from workers import WorkerProcess, client, wait_until

pytestmark = pytest.mark.slow


def test_two_workers_run_tasks_with_their_options(engine_uri, tmp_path):
    with client(engine_uri) as conn:
        queues = zasync.install_queues(conn, "reports")
        queues["reports"].quotas.create("one", size=1)
        doubled = [double.put(conn, n) for n in range(20)]
        reports = [report.put(conn, f"r{n}", pages=n) for n in range(5)]
        transaction.commit()
        workers = [
            WorkerProcess(
                engine_uri,
                tmp_path / f"worker{i}.log",
                "--agent",
                "/main:2+4",
                "--agent",
                "reports/main:2+4",
            )
            for i in range(2)
        ]
        try:

            def all_done() -> bool:
                transaction.begin()
                return all(job.status == COMPLETED for job in [*doubled, *reports])

            wait_until(all_done, message="the tasks never ran")
            assert [job.result for job in doubled] == [2 * n for n in range(20)]
            assert [job.result for job in reports] == [f"r{n} ({n} pages)" for n in range(5)]
            assert {job.retry_policy_factory for job in reports} == {"never"}
        finally:
            for worker in workers:
                worker.stop()
