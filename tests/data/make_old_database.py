"""Write a small FileStorage database the way a worker of this version leaves one.

The result is committed under ``tests/data/databases/<version>/Data.fs`` and
read by ``tests/integration/test_schema.py`` with the code of every later version: it is
how we know that a database written today keeps opening and running tomorrow.

It holds jobs in every status (completed with a result, failed, cancelled,
quarantined, pending, scheduled, with callbacks, in ``serial``/``parallel``
patterns, under a quota, in a second queue) and the registry of two
dispatchers: one stopped cleanly, and one that died (``os._exit``) while it ran
a job, which the next worker must notice and recover.

Run it with the package of the version it should capture installed::

    python tests/data/make_old_database.py tests/data/databases/0.1.0.dev0

It uses only the public API, so it also documents what a database of that
version was made with.
"""

from __future__ import annotations

import datetime
import importlib
import logging
import operator
import os
import sys
import tempfile
import time
from pathlib import Path

import transaction
import ZODB
from ZODB.FileStorage import FileStorage

import zasync
import zasync.testing
from zasync import COMPLETED, AgentSpec, Job, NeverRetry
from zasync.demo import Tally, combine, record, square_sum
from zasync.model.patterns import parallel, serial

PATIENCE = 120.0


def _gone_module() -> object:
    """A module importable now and deleted before the worker runs its job (a bad deploy)."""
    where = Path(tempfile.mkdtemp())
    (where / "zasync_golden_gone.py").write_text("def work():\n    return 1\n")
    sys.path.insert(0, str(where))
    module = importlib.import_module("zasync_golden_gone")
    return module, where


def _finished(conn: object, jobs: list[Job]) -> bool:
    transaction.begin()
    return all(job.status == COMPLETED for job in jobs)


def main(target: str) -> int:
    folder = Path(target)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "Data.fs"
    if path.exists():
        print(f"{path} exists: remove it first", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.WARNING)
    db = ZODB.DB(FileStorage(str(path)))
    conn = db.open()
    queues = zasync.install_queues(conn)
    queues["reports"] = zasync.Queue()
    queues["crash"] = zasync.Queue()  # only the dying worker has an agent here
    queue = queues[""]
    queue.quotas.create("one", size=1)
    transaction.commit()

    # 1. Work a clean worker finished, then stopped.
    module, where = _gone_module()
    done = [
        queue.put(Job(operator.mul, 6, 7)),
        queue.put(Job(operator.truediv, 1, 0), retry_policy_factory=NeverRetry),
        queue.put(serial(Job(operator.add, 1, 2), Job(operator.add, 3, 4))),
        queue.put(Job(square_sum, 0, 10), quota_names=("one",)),
        queues["reports"].put(Job(operator.pow, 2, 10)),
    ]
    with_callbacks = queue.put(Job(operator.mul, 3, 3))
    with_callbacks.addCallbacks(success=Job(operator.neg), failure=Job(repr))
    done.append(with_callbacks)
    gone = queue.put(Job(module.work))  # type: ignore[attr-defined]
    transaction.commit()
    (where / "zasync_golden_gone.py").unlink()
    del sys.modules["zasync_golden_gone"]
    agents = [
        AgentSpec(queue="", threads=2, filter=callable),
        AgentSpec(queue="reports", threads=1),
    ]
    with zasync.testing.running_dispatcher(db, agents=agents, poll_interval=0.1):
        zasync.testing.wait_for(lambda: _finished(conn, done), PATIENCE, "the jobs never ran")
        zasync.testing.wait_for(lambda: queue._quarantine, PATIENCE, "never quarantined")
    transaction.begin()
    cancelled = queue.put(Job(operator.mul, 5, 5))
    transaction.commit()
    zasync.cancel(cancelled, "changed my mind")

    # 2. Work waiting for the next worker.
    tally = Tally()
    conn.root()["golden_tally"] = tally
    pending = [queue.put(Job(operator.mul, 2, 21)), queues["reports"].put(Job(operator.mul, 3, 14))]
    pending += [queue.put(Job(operator.add, 40, n), quota_names=("one",)) for n in (1, 2)]
    slices = [Job(square_sum, n * 10, n * 10 + 10) for n in range(3)]
    for piece in slices:
        piece.addCallback(Job(record, tally))
    pending.append(queue.put(parallel(*slices, postprocess=combine)))
    chained = queue.put(Job(operator.mul, 7, 6))
    chained.addCallback(Job(operator.neg))
    pending.append(chained)
    scheduled = queue.put(
        Job(operator.mul, 4, 4),
        begin_after=datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC),
    )
    conn.root()["golden"] = {
        "pending": pending,
        "scheduled": scheduled,
        "done": done,
        "cancelled": cancelled,
        "gone": gone,
    }
    transaction.commit()

    # 3. A worker dies while it runs a job: nothing of it is cleaned up.
    crashing = queues["crash"].put(Job(time.sleep, 0.5))
    conn.root()["golden"]["crashed"] = crashing
    conn.root()._p_changed = True
    transaction.commit()
    dying = zasync.Dispatcher(db, poll_interval=0.1, agents=[AgentSpec(queue="crash", threads=1)])
    dying.activate()
    zasync.testing.wait_for(lambda: crashing.status == zasync.ACTIVE, PATIENCE, "never started")
    # The sleeping job holds its thread; the poll thread may be mid-commit: wait for
    # a quiet moment by taking the storage's commit lock before leaving.
    db.storage._commit_lock.acquire()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/databases/new"))
