"""What run-time limits cost, and how soon a job past its limit is stopped.

In one process, on a FileStorage file in a temporary directory, with a real
dispatcher (``zasync.testing.running_dispatcher``):

* **overshoot**: jobs with a limit of ``--limit`` seconds that never end by
  themselves, half computing in Python, half blocked in one C call
  (``time.sleep``), each followed by a quick job, run by an agent of one
  thread.  For each: how long after its limit its failure was stored (its
  end time minus its start time minus the limit), and how long after its
  limit the quick job behind it started (the slot was free again);
* **plain path**: jobs/s of ``--jobs`` quick jobs through a 4-thread agent,
  without a limit, with a limit of 60 s each, and with a queue default of
  60 s.  Median of ``--runs`` runs.

Run: .venv/bin/python bench/time_limits.py [--stops 20] [--limit 0.5] [--jobs 2000]
"""

from __future__ import annotations

import argparse
import json
import logging
import operator
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import transaction
import ZODB
from ZODB.FileStorage import FileStorage

import zasync
from zasync.testing import running_dispatcher, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import support


def fresh(directory: Path) -> tuple[Any, Any, Any]:
    db = ZODB.DB(FileStorage(str(directory / f"bench-{time.monotonic_ns()}.fs")))
    conn = db.open()
    queue = zasync.install_queues(conn)[""]
    transaction.commit()
    return db, conn, queue


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def overshoot(directory: Path, stops: int, limit: float) -> dict[str, Any]:
    db, conn, queue = fresh(directory)
    pairs = []
    for n in range(stops):
        if n % 2:
            stuck = zasync.Job(support.note_start_write_then_sleep, f"c-{n}", str(directory / "s"))
        else:
            stuck = zasync.Job(support.write_then_spin, f"py-{n}")
        pairs.append((queue.put(stuck, timeout=limit), queue.put(zasync.Job(operator.add, n, 1))))
    transaction.commit()
    with running_dispatcher(db, threads=1, poll_interval=0.05):
        wait_for(
            lambda: all(quick.status == zasync.COMPLETED for _, quick in pairs),
            timeout=stops * (limit + 10),
            message="the jobs never finished",
        )
    failed_after, free_after = [], []
    for stuck, quick in pairs:
        assert stuck.result.check(zasync.TimeLimitError)
        deadline = stuck.active_start.timestamp() + limit
        failed_after.append(stuck.active_end.timestamp() - deadline)
        free_after.append(quick.active_start.timestamp() - deadline)
    transaction.abort()
    conn.close()
    db.close()
    return {
        "stops": stops,
        "limit_s": limit,
        "failed_after_limit_p50_s": statistics.median(failed_after),
        "failed_after_limit_max_s": max(failed_after),
        "slot_free_after_limit_p50_s": statistics.median(free_after),
        "slot_free_after_limit_p99_s": percentile(free_after, 0.99),
        "slot_free_after_limit_max_s": max(free_after),
    }


def jobs_per_second(directory: Path, jobs: int, mode: str) -> float:
    db, conn, queue = fresh(directory)
    if mode == "queue default":
        queue.default_timeout = 60
    options = {"timeout": 60} if mode == "own limit" else {}
    put = [queue.put(zasync.Job(operator.mul, n, 2), **options) for n in range(jobs)]
    transaction.commit()
    last = put[-1]
    with running_dispatcher(db, threads=4, prefetch=16, poll_interval=0.05):
        start = time.perf_counter()
        wait_for(
            lambda: (
                last.status == zasync.COMPLETED and all(j.status == zasync.COMPLETED for j in put)
            ),
            timeout=600,
            message="the jobs never finished",
        )
        elapsed = time.perf_counter() - start
    transaction.abort()
    conn.close()
    db.close()
    return jobs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stops", type=int, default=20)
    parser.add_argument("--limit", type=float, default=0.5)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.getLogger("zasync").setLevel(logging.CRITICAL)  # one failure line per stopped job
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        stopped = overshoot(directory, args.stops, args.limit)
        print(
            f"{args.stops} jobs past a {args.limit:g} s limit (half in Python, half in C): "
            f"failed {stopped['failed_after_limit_p50_s']:.3f} s after it (median; max "
            f"{stopped['failed_after_limit_max_s']:.3f} s); the next job started "
            f"{stopped['slot_free_after_limit_p50_s']:.3f} s after it (median; p99 "
            f"{stopped['slot_free_after_limit_p99_s']:.3f} s, max "
            f"{stopped['slot_free_after_limit_max_s']:.3f} s)"
        )
        plain: dict[str, float] = {}
        for mode in ("no limit", "own limit", "queue default"):
            plain[mode] = statistics.median(
                jobs_per_second(directory, args.jobs, mode) for _ in range(args.runs)
            )
            print(f"{args.jobs} quick jobs, {mode}: {plain[mode]:,.0f} jobs/s")
    if args.json is not None:
        args.json.write_text(json.dumps({"stops": stopped, "jobs_per_second": plain}, indent=2))


if __name__ == "__main__":
    main()
