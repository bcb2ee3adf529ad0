"""A rate limit with three real workers, on ZEO and on PostgreSQL: no one-second window over 20.

Three workers of four threads each drain 150 no-op jobs that all count
against one limit of 20 starts per second.  Afterwards every job's start
(``active_start``) is read from the database: no window of one second, at
any position, holds more than 20 of them, and the limit was not starved
(the jobs took about as long as 150 / 20 seconds).
"""

from __future__ import annotations

import datetime
import operator

import pytest
import transaction

import zasync
from zasync import COMPLETED

from workers import WorkerProcess, client, wait_until

pytestmark = pytest.mark.slow

JOBS = 150
LIMIT = 20
SECOND = datetime.timedelta(seconds=1)


def test_three_workers_never_start_more_than_the_limit_in_any_second(engine_uri, tmp_path):
    with client(engine_uri) as conn:
        queue = zasync.install_queues(conn)[""]
        queue.rate_limits.set("api", LIMIT, per=1)
        queue.pause("filling")
        jobs = [queue.put(zasync.Job(operator.add, n, 0), rate_limits=["api"]) for n in range(JOBS)]
        transaction.commit()
        workers = [
            WorkerProcess(engine_uri, tmp_path / f"worker{n}.log", "--threads", "4")
            for n in range(3)
        ]
        try:
            for worker in workers:
                worker.wait_for_log("is paused")
            queue.resume()
            transaction.commit()

            def all_done() -> bool:
                transaction.begin()
                return all(job.status == COMPLETED for job in jobs)

            wait_until(all_done, message="the limited jobs never all ran")
        finally:
            for worker in workers:
                worker.stop()
        starts = sorted(job.active_start for job in jobs)
        busiest = max(
            sum(1 for other in starts if start <= other < start + SECOND) for start in starts
        )
        assert busiest <= LIMIT, f"{busiest} starts in one second"
        spread = (starts[-1] - starts[0]).total_seconds()
        assert spread >= (JOBS / LIMIT) - 1.5  # 7.5 s of work at 20/s, not less
        print(f"{JOBS} starts over {spread:.1f} s; busiest one-second window: {busiest}")
