"""Time limits across real worker processes, on ZEO and on PostgreSQL.

Two workers of one thread each share jobs that run past their limit with
jobs that finish in time: every job past its limit fails with TimeLimitError
and nothing it wrote is stored, the others all succeed, and neither worker
loses a thread or logs an error of its own bookkeeping.
"""

from __future__ import annotations

import pytest
import transaction

import zasync
from zasync import COMPLETED

from support import multiply, write_then_spin
from workers import WorkerProcess, client, wait_until

pytestmark = pytest.mark.slow


def test_two_workers_stop_every_job_past_its_limit_and_no_other(engine_uri, tmp_path):
    with client(engine_uri) as conn:
        queue = zasync.install_queues(conn)[""]
        spinning = [
            queue.put(zasync.Job(write_then_spin, f"spun-{n}"), timeout=1) for n in range(4)
        ]
        quick = [queue.put(zasync.Job(multiply, n, 3), timeout=60) for n in range(12)]
        transaction.commit()
        workers = [
            WorkerProcess(engine_uri, tmp_path / f"worker{i}.log", "--agent", "/main:1+0")
            for i in range(2)
        ]
        try:

            def all_done() -> bool:
                transaction.begin()
                return all(job.status == COMPLETED for job in [*spinning, *quick])

            wait_until(all_done, message="the jobs never all finished")
            for job in spinning:
                assert job.result.check(zasync.TimeLimitError), job.result
            assert [job.result for job in quick] == [3 * n for n in range(12)]
            transaction.begin()
            assert not [key for key in conn.root() if str(key).startswith("spun-")]
            # Logged just after the commit that failed the job: wait for the line.
            wait_until(
                lambda: (
                    sum(w.text().count("stopped: the job ran longer") for w in workers)
                    == len(spinning)
                ),
                message="not one stop line per job",
            )
            for worker in workers:
                assert "CRITICAL" not in worker.text() and "died" not in worker.text()
        finally:
            for worker in workers:
                worker.stop()
