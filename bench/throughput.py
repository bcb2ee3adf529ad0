"""Throughput and latency of one worker on the embedded default (a FileStorage file).

Prints, measured in one run on this machine:

* the raw commit rate of the same storage: one small object per transaction;
* N no-op jobs (default 10,000) through one worker: jobs per second from the
  worker's start to the last completion, and storage commits per job;
* put-to-start latency p50/p99, jobs put one at a time into an idle worker,
  from the worker's own process and from another process.

Run: .venv/bin/python bench/throughput.py [--jobs 10000] [--threads 1 4] [--prefetch 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import persistent
import transaction
import ZODB
from ZODB.FileStorage import FileStorage

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import jobs as bench_jobs  # noqa: E402

import zasync  # noqa: E402
from zasync.testing import running_dispatcher, wait_for  # noqa: E402


class Small(persistent.Persistent):
    value = 0


def storage_transactions(storage: FileStorage, after: bytes) -> int:
    return sum(1 for t in storage.iterator(after) if t.tid > after)


def raw_commit_rate(directory: Path, commits: int, new_objects: bool = False) -> float:
    """Commits per second changing one small object each (or adding one new object)."""
    db = ZODB.DB(FileStorage(str(directory / f"raw-{new_objects}.fs")))
    conn = db.open()
    root = conn.root()
    small = root["small"] = Small()
    transaction.commit()
    started = time.perf_counter()
    for i in range(commits):
        if new_objects:
            root[f"o{i % 100}"] = Small()  # a new small object (and the root) per commit
        else:
            small.value += 1  # one existing small object per commit
        transaction.commit()
    elapsed = time.perf_counter() - started
    conn.close()
    db.close()
    return commits / elapsed


def throughput(directory: Path, count: int, threads: int, prefetch: int) -> dict[str, float]:
    storage = FileStorage(str(directory / f"jobs-{threads}.fs"))
    db = ZODB.DB(storage)
    conn = db.open()
    queue = zasync.install_queues(conn)[""]
    transaction.commit()
    for start in range(0, count, 1000):
        for _ in range(min(1000, count - start)):
            queue.put(bench_jobs.noop)
        transaction.commit()
    before = db.lastTransaction()
    started = time.perf_counter()
    with running_dispatcher(db, threads=threads, prefetch=prefetch, poll_interval=1.0):
        wait_for(lambda: len(queue) == 0, timeout=600)
        done = lambda: all(  # noqa: E731
            len(a) == 0 for da in queue.dispatchers.values() for a in da.values()
        )
        wait_for(done, timeout=600, message="jobs never finished")
        elapsed = time.perf_counter() - started
    commits = storage_transactions(storage, before)
    completed = sum(len(a.completed) for da in queue.dispatchers.values() for a in da.values())
    conn.close()
    db.close()
    assert completed == count, (completed, count)
    return {
        "jobs_per_second": count / elapsed,
        "commits_per_job": commits / count,
        "seconds": elapsed,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def put_one_at_a_time(queue: Any, samples: int) -> list[float]:
    """Seconds from each put (committed) to its job's start, one job at a time."""
    delays = []
    for _ in range(samples):
        job = queue.put(bench_jobs.started_at)
        put_at = time.time()
        transaction.commit()
        wait_for(lambda: job.status == zasync.COMPLETED, timeout=30)  # noqa: B023
        delays.append(job.result - put_at)
    return delays


def latency_same_process(directory: Path, samples: int) -> list[float]:
    db = ZODB.DB(FileStorage(str(directory / "latency.fs")))
    conn = db.open()
    queue = zasync.install_queues(conn)[""]
    transaction.commit()
    with running_dispatcher(db, threads=4, poll_interval=5.0):
        delays = put_one_at_a_time(queue, samples)
    conn.close()
    db.close()
    return delays


def latency_other_process(directory: Path, samples: int) -> list[float]:
    path = directory / "other.fs"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent / "src")])
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zasync",
            "-q",
            "--db",
            f"file://{path}",
            "worker",
            "--threads",
            "4",
            "--poll-interval",
            "5",
        ],
        env=env,
    )
    try:
        from zasync.storage.embedded import is_served

        deadline = time.monotonic() + 60
        while not is_served(path):
            if time.monotonic() > deadline:
                raise RuntimeError("worker never started serving")
            time.sleep(0.05)
        opened = zasync.open_database(f"file://{path}")
        conn = opened.db.open()
        wait_for(lambda: zasync.get_queues(conn).get("") is not None, timeout=60)
        queue = zasync.get_queues(conn)[""]
        delays = put_one_at_a_time(queue, samples)
        conn.close()
        opened.close()
        return delays
    finally:
        worker.terminate()
        worker.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--prefetch", type=int, default=64)
    parser.add_argument("--raw-commits", type=int, default=3000)
    parser.add_argument("--samples", type=int, default=200)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        raw = raw_commit_rate(directory, options.raw_commits)
        raw_new = raw_commit_rate(directory, options.raw_commits, new_objects=True)
        print(
            f"raw FileStorage commit rate: {raw:,.0f} commits/s changing one small object; "
            f"{raw_new:,.0f} commits/s adding one new small object"
        )
        for threads in options.threads:
            result = throughput(directory, options.jobs, threads, options.prefetch)
            rate = result["jobs_per_second"]
            print(
                f"{options.jobs:,} no-op jobs, 1 worker, {threads} thread(s), "
                f"prefetch {options.prefetch}: {rate:,.0f} jobs/s ({result['seconds']:.1f} s), "
                f"{result['commits_per_job']:.3f} commits/job; jobs/s / raw rate: "
                f"{rate / raw:.2f} (change one), {rate / raw_new:.2f} (add one)"
            )
        for label, function in (
            ("same process", latency_same_process),
            ("another process", latency_other_process),
        ):
            delays = [d * 1000 for d in function(directory, options.samples)]
            print(
                f"put-to-start latency from {label}: p50 {percentile(delays, 0.5):.2f} ms, "
                f"p99 {percentile(delays, 0.99):.2f} ms, mean {statistics.mean(delays):.2f} ms "
                f"({len(delays)} jobs put one at a time into an idle worker)"
            )


if __name__ == "__main__":
    main()
