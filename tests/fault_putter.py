"""The application process of the embedded fault test: puts jobs, in batches, while the worker dies.

Run as ``python fault_putter.py URI JOBS BATCH BACKLOG``.  It opens the
embedded file as zasync's default does (a ZEO client of the worker's socket,
which serves the file itself while nobody else does), then puts ``JOBS`` jobs
of :func:`support.create_effect`, ``BATCH`` per transaction, whenever the
queue holds fewer than ``BACKLOG`` jobs, so that putting lasts most of the
run and the worker always has work.  Every tenth job runs under
``NeverRetry``.

Each batch's transaction also records its jobs in ``root["fault_batches"]``
under the batch's number: when a commit fails (the server died during it),
the next attempt first looks there, so a batch is put exactly once even when
the failed commit did land.  Prints one line per error, and one at the end.
"""

from __future__ import annotations

import logging
import sys
import time

import transaction
from persistent.list import PersistentList

import zasync
from zasync import Job, NeverRetry

import support

NEVER_RETRY_EVERY = 10
#: How long the putter keeps trying one batch before it gives up (and fails).
PATIENCE = 180.0


def put_batch(conn: object, number: int, batch: int, jobs: int) -> None:
    """Put batch ``number`` (jobs ``number * batch`` onwards) and record it; does not commit."""
    root = conn.root()  # type: ignore[attr-defined]
    queue = zasync.get_queue(conn)
    put = PersistentList()
    for job_number in range(number * batch, min(jobs, (number + 1) * batch)):
        options = {}
        if job_number % NEVER_RETRY_EVERY == 0:
            options["retry_policy_factory"] = NeverRetry
        put.append(queue.put(Job(support.create_effect, job_number), **options))
    root["fault_batches"][number] = put


def main(uri: str, jobs: int, batch: int, backlog: int) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    opened = zasync.open_database(uri)
    conn = opened.db.open()
    errors = 0
    batches = -(-jobs // batch)
    try:
        for number in range(batches):
            deadline = time.monotonic() + PATIENCE
            while True:
                try:
                    transaction.begin()
                    if number in conn.root()["fault_batches"]:
                        break  # an earlier attempt's commit failed, but landed
                    if len(zasync.get_queue(conn)) >= backlog:
                        transaction.abort()
                        time.sleep(0.05)
                        continue
                    put_batch(conn, number, batch, jobs)
                    transaction.commit()
                    break
                except Exception as error:  # the server died: wait for the next one
                    transaction.abort()
                    errors += 1
                    print(f"batch {number}: {type(error).__name__}: {error}", flush=True)
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        print(
            f"put {jobs} jobs in {batches} batches ({errors} errors retried); "
            f"served the file at the end: {opened.serving}",
            flush=True,
        )
    finally:
        transaction.abort()
        conn.close()
        opened.close()
    return 0


if __name__ == "__main__":
    uri, jobs, batch, backlog = sys.argv[1], *map(int, sys.argv[2:5])
    raise SystemExit(main(uri, jobs, batch, backlog))
