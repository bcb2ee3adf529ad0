"""Declared retries across real worker processes, on ZEO and on PostgreSQL.

Each attempt may run on either worker: the backoff is a due time in the
database, not a sleep in a worker, so whichever worker claims the job next
runs its next attempt, and the history counts every attempt once.
"""

from __future__ import annotations

import pytest
import transaction

import zasync
from zasync import COMPLETED
from zasync.ops import views

from support import Unreachable, fail_twice_then_double
from workers import WorkerProcess, client, wait_until

pytestmark = pytest.mark.slow


def test_two_workers_share_the_attempts_of_declared_retries(engine_uri, tmp_path):
    declared = zasync.Retry(attempts=3, on=(Unreachable,), backoff=0.2, jitter=0.5)
    with client(engine_uri) as conn:
        queue = zasync.install_queues(conn)[""]
        recovering = [
            queue.put(zasync.Job(fail_twice_then_double, n), retry=declared) for n in range(12)
        ]
        dying = [
            queue.put(zasync.Job(fail_twice_then_double, n), retry=zasync.Retry(2, backoff=0.1))
            for n in range(4)
        ]
        transaction.commit()
        workers = [
            WorkerProcess(engine_uri, tmp_path / f"worker{i}.log", "--agent", "/main:2+2")
            for i in range(2)
        ]
        try:

            def all_done() -> bool:
                transaction.begin()
                return all(job.status == COMPLETED for job in [*recovering, *dying])

            wait_until(all_done, message="the retried jobs never finished")
            assert [job.result for job in recovering] == [2 * n for n in range(12)]
            for job in recovering:
                history = views.attempts(job)
                assert [a["outcome"] for a in history] == ["retried", "retried", "succeeded"]
                starts = [a["start"] for a in history]
                assert starts == sorted(starts)
            for job in dying:
                assert job.result.check(Unreachable)
                assert [a.number for a in job.failed_attempts] == [1]
                assert views.is_dead_letter(job)
        finally:
            for worker in workers:
                worker.stop()
