"""Batched puts while a worker drains: how often the application's commits conflict.

An application puts N batches of B jobs (default 50 x 1,000), each batch in
one transaction (B ``queue.put`` calls, one commit), retrying a batch from
scratch on ConflictError as an application does, while a real ``zasync
worker`` process with a few threads claims and runs the jobs.  Printed per
engine (a table, then one JSON line each):

* batches, jobs, seconds for all the puts (retries included);
* conflicts (failed batch commits), and the most retries one batch needed;
* what the conflicts were on (class and oid of the object ZODB named);
* the drained rate: jobs the worker claimed while the puts went on, per second;
* the worker's own conflict retries (its log line at stop).

Engines: ``file`` (the embedded worker: it owns a FileStorage file and
serves it on a socket that the putting process connects to), ``zeo`` (a ZEO
server from the ZEO package; the worker and the putter are its clients),
``postgres`` (RelStorage; the server on 127.0.0.1:5432 if one listens, see
tests/pgserver.py).  ``--no-worker`` measures the puts alone (the baseline);
``--pause S`` waits S seconds between batches, so that the worker keeps up
and each batch lands in nearly empty lanes.

Run: .venv/bin/python bench/batch_puts.py [--batches 50] [--batch-size 1000] [--threads 4]
     [--engines file zeo postgres] [--no-worker] [--pause 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import transaction
from ZODB.POSException import ConflictError
from ZODB.utils import u64

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "tests"))

from cluster import CONFLICTS, Engine  # noqa: E402

import zasync  # noqa: E402

from workers import WorkerProcess, client  # noqa: E402


def fresh_uri(kind: str, engine: Engine | None, directory: Path) -> str:
    if kind == "file":
        return f"file://{directory / 'batch.fs'}"
    assert engine is not None
    return engine.fresh("batch")


def what_conflicted(error: ConflictError) -> str:
    """The class and oid ZODB names in a ConflictError (either may be unknown)."""
    oid = getattr(error, "oid", None)
    name = getattr(error, "class_name", None) or "?"
    return f"{name} oid {u64(oid) if oid else '?'}"


def put_batches(
    queue: Any, batches: int, size: int, pause: float
) -> tuple[list[int], Counter[str], float]:
    """Put the batches, each in one commit retried until it succeeds.

    Returns the retries each batch needed, what the conflicts were on, and the seconds.
    """
    retries: list[int] = []
    on: Counter[str] = Counter()
    started = time.perf_counter()
    for _ in range(batches):
        failed = 0
        while True:
            try:
                transaction.begin()
                for _ in range(size):
                    queue.put(zasync.Job(time.time))
                transaction.commit()
                break
            except ConflictError as error:
                transaction.abort()
                failed += 1
                on[what_conflicted(error)] += 1
        retries.append(failed)
        if pause:
            time.sleep(pause)
    return retries, on, time.perf_counter() - started


def run(kind: str, options: argparse.Namespace, directory: Path) -> dict[str, Any]:
    """One measurement on one engine: start the worker, put the batches, stop it."""
    engine = None if kind == "file" else Engine(kind, directory)
    worker = None
    try:
        uri = fresh_uri(kind, engine, directory)
        with client(uri) as conn:
            zasync.install_queues(conn)
            transaction.commit()
        if not options.no_worker:
            worker = WorkerProcess(
                uri,
                directory / f"worker-{kind}.log",
                "--threads",
                str(options.threads),
                "--poll-interval",
                "1",
                "--ping-interval",
                "10",
                "--death-interval",
                "30",
            )
            worker.wait_for_log("worker ")
        with client(uri) as conn:
            queue = zasync.get_queue(conn)
            retries, on, seconds = put_batches(
                queue, options.batches, options.batch_size, options.pause
            )
            transaction.begin()
            jobs = options.batches * options.batch_size
            claimed = jobs - len(queue)
        worker_conflicts = "-"
        if worker is not None:
            worker.stop()
            found = CONFLICTS.search(worker.text())
            if found is not None:
                worker_conflicts = f"job {found.group(1)}, bookkeeping {found.group(2)}"
                if found.group(3):
                    worker_conflicts += f" (on: {found.group(3)})"
        return {
            "engine": kind,
            "worker": worker is not None,
            "batches": options.batches,
            "jobs": jobs,
            "seconds": round(seconds, 2),
            "conflicts": sum(retries),
            "max_retries": max(retries),
            "batches_retried": sum(1 for r in retries if r),
            "drained_per_second": round(claimed / seconds, 1),
            "conflicts_on": dict(on.most_common()),
            "worker_conflicts": worker_conflicts,
        }
    finally:
        if worker is not None:
            worker.stop()
        if engine is not None:
            engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--engines", nargs="+", default=["file"])
    parser.add_argument("--no-worker", action="store_true", help="the puts alone (baseline)")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between batches")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the worker logs there")
    options = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in options.engines:
            directory = Path(tmp) / kind
            directory.mkdir()
            results.append(run(kind, options, directory))
            if options.keep_logs:
                for log in directory.glob("*.log"):
                    (Path(options.keep_logs) / f"{kind}-{log.name}").write_bytes(log.read_bytes())
    header = (
        f"{'engine':8} {'worker':6} {'batches':>7} {'jobs':>8} {'seconds':>8} "
        f"{'conflicts':>9} {'max retries':>11} {'drained/s':>9}"
    )
    print(header)
    for r in results:
        print(
            f"{r['engine']:8} {'yes' if r['worker'] else 'no':6} {r['batches']:>7,} "
            f"{r['jobs']:>8,} {r['seconds']:>8.1f} {r['conflicts']:>9} "
            f"{r['max_retries']:>11} {r['drained_per_second']:>9,.0f}"
        )
        if r["conflicts_on"]:
            on = ", ".join(f"{k} x{v}" for k, v in r["conflicts_on"].items())
            print(f"   conflicts on: {on}")
        print(f"   worker's conflict retries: {r['worker_conflicts']}")
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
