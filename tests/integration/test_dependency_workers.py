"""Jobs put ``after`` others, run by two real worker processes, on ZEO and on PostgreSQL."""

from __future__ import annotations

import datetime

import pytest
import transaction

import zasync
from task_examples import double
from zasync import COMPLETED, DependencyFailedError

from support import raise_value_error, sum_of_results
from workers import WorkerProcess, client, wait_until

pytestmark = pytest.mark.slow


def test_two_workers_run_a_graph_of_jobs_in_order(engine_uri, tmp_path):
    with client(engine_uri) as conn:
        queue = zasync.install_queues(conn)[""]
        parts = [double.put(queue, n) for n in range(10)]
        total = queue.put(zasync.Job(sum_of_results, *parts), after=parts)
        final = queue.put(zasync.Job(sum_of_results, total), after=[total])
        bad = queue.put(zasync.Job(raise_value_error))
        doomed = queue.put(zasync.Job(double, 1), after=[bad, parts[0]])
        anyway = queue.put(zasync.Job(double, 2), after=[bad], on_dependency_failure="run")
        later = queue.put(zasync.Job(double, 3), begin_after=datetime.timedelta(hours=1))
        orphan = queue.put(zasync.Job(double, 4), after=[later])
        transaction.commit()
        workers = [
            WorkerProcess(engine_uri, tmp_path / f"worker{i}.log", "--agent", "/main:2+2")
            for i in range(2)
        ]
        try:
            everything = [*parts, total, final, bad, doomed, anyway]

            def all_done() -> bool:
                transaction.begin()
                return all(job.status == COMPLETED for job in everything)

            wait_until(all_done, message="the graph never finished")
            assert total.result == final.result == sum(2 * n for n in range(10))
            assert total.active_start >= max(p.active_end for p in parts)
            assert final.active_start >= total.active_end
            assert doomed.result.check(DependencyFailedError) and doomed.active_start is None
            assert anyway.result == 4

            assert queue.waiting == [orphan]
            zasync.cancel(later, "not needed")  # the job waiting for it must not hang
            transaction.commit()
            wait_until(all_done_for(orphan), message="the orphan never settled")
            assert orphan.result.check(DependencyFailedError)
            assert "CancelledError: not needed" in str(orphan.result)
        finally:
            for worker in workers:
                worker.stop()


def all_done_for(job):
    def done() -> bool:
        transaction.begin()
        return job.status == COMPLETED

    return done
