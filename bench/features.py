"""What the scheduling features cost: puts/s with each option, claims/s with priorities.

Measured in one process on a FileStorage file in a temporary directory (the
embedded default, without a worker), so that only the model's work counts:

* puts per second, in transactions of 100 puts: plain jobs; with a distinct
  ``unique_key`` each; with a ``priority`` (five different ones); with
  ``after=`` a finished job; with ``retry=Retry(...)``;
* claims per second from a queue of N pending jobs (default 100,000), in
  transactions of 100 claims: all of priority 0, then spread over five
  priorities (the claims take the highest first), then with one due job of
  the highest priority among N far-future ones of it (the claim skips them).

Each figure is the median of ``--runs`` runs.  The plain path's jobs/s and
put-to-start latency through a real worker are ``bench/throughput.py``'s;
run it on two commits to compare them.

Run: .venv/bin/python bench/features.py [--pending 100000] [--puts 5000] [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import operator
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import transaction
import ZODB
from ZODB.FileStorage import FileStorage

import zasync
from zasync.testing import run_until_idle

BATCH = 100
PRIORITIES = (-2, -1, 0, 1, 2)


def fresh(directory: Path) -> tuple[Any, Any, Any]:
    db = ZODB.DB(FileStorage(str(directory / f"bench-{time.monotonic_ns()}.fs")))
    conn = db.open()
    queue = zasync.install_queues(conn)[""]
    transaction.commit()
    return db, conn, queue


def close(db: Any, conn: Any) -> None:
    transaction.abort()
    conn.close()
    db.close()


def puts_per_second(
    directory: Path, count: int, options: Callable[[Any, int], dict[str, Any]]
) -> float:
    db, conn, queue = fresh(directory)
    try:
        done = queue.put(zasync.Job(operator.add, 0, 0))
        transaction.commit()
        run_until_idle(db)  # a finished job for after=
        transaction.begin()
        start = time.perf_counter()
        for number in range(count):
            queue.put(zasync.Job(operator.add, number, 1), **options(done, number))
            if number % BATCH == BATCH - 1:
                transaction.commit()
        transaction.commit()
        return count / (time.perf_counter() - start)
    finally:
        close(db, conn)


def claims_per_second(
    directory: Path, pending: int, priority: Callable[[int], int], claims: int, later: bool = False
) -> float:
    db, conn, queue = fresh(directory)
    try:
        future = zasync.utcnow() + datetime.timedelta(days=1)
        for number in range(pending):
            options: dict[str, Any] = {"priority": priority(number)}
            if later and number:
                options["begin_after"] = future
            queue.put(zasync.Job(operator.add, number, 1), **options)
            if number % 5000 == 4999:
                transaction.commit()
        transaction.commit()
        start = time.perf_counter()
        taken = 0
        while taken < claims:
            got = queue.claim_batch(BATCH)
            transaction.commit()
            if not got:
                break
            taken += len(got)
        return taken / (time.perf_counter() - start)
    finally:
        close(db, conn)


def median(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--puts", type=int, default=5_000)
    parser.add_argument("--claims", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    retry = zasync.Retry(attempts=5)
    put_cases: dict[str, Callable[[Any, int], dict[str, Any]]] = {
        "plain": lambda done, n: {},
        "unique_key": lambda done, n: {"unique_key": f"key-{n}"},
        "priority": lambda done, n: {"priority": PRIORITIES[n % len(PRIORITIES)]},
        "after a finished job": lambda done, n: {"after": [done]},
        "retry=Retry(...)": lambda done, n: {"retry": retry},
    }
    results: dict[str, Any] = {
        "puts_per_second": {},
        "claims_per_second": {},
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        puts_per_second(directory, min(args.puts, 1000), put_cases["plain"])  # warm up
        for label, options in put_cases.items():
            rate = median(args.runs, lambda o=options: puts_per_second(directory, args.puts, o))
            results["puts_per_second"][label] = round(rate)
            print(f"puts/s   {label:28} {rate:8.0f}", flush=True)
        claim_cases = {
            "priority 0": (lambda n: 0, False),
            "five priorities": (lambda n: PRIORITIES[n % len(PRIORITIES)], False),
            "one due among far-future, top priority": (lambda n: 2, True),
        }
        for label, (priority, later) in claim_cases.items():
            wanted = 1 if later else args.claims
            rate = median(
                args.runs,
                lambda p=priority, far=later, w=wanted: claims_per_second(
                    directory, args.pending, p, w, far
                ),
            )
            results["claims_per_second"][label] = round(rate)
            print(f"claims/s {label:40} {rate:8.0f}  ({args.pending:,} pending)", flush=True)
    print(json.dumps(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
