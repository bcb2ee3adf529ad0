"""Several worker processes on a shared engine: throughput and conflict retries.

For each engine (a ZEO server from the ZEO package, RelStorage on
PostgreSQL) and for 1, 2 and 3 worker processes with 4 threads each, puts
N no-op jobs (default 2,000) into a fresh database while the workers wait,
and prints:

* jobs per second from the put's commit to the last completion;
* conflict retries per 1,000 jobs, as the workers count them (their own job
  commits, and zasync's bookkeeping: claims, filing, pings);
* the raw commit rate of the same engine measured in the same run (one
  small object changed per transaction, from one client), and the ratio.

PostgreSQL: the server on 127.0.0.1:5432 (trust auth) if one listens, else a
private one started with Debian's ``initdb`` (see tests/pgserver.py).

Each is measured twice: with the jobs put as a backlog in one commit, and
as a steady flow the workers keep up with (--trickle jobs per second, each
put in its own commit), where every put wakes every worker at once.

Run: .venv/bin/python bench/cluster.py [--jobs 2000] [--workers 1 2 3] [--engines zeo postgres]
     [--trickle 100]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import persistent
import transaction
from ZODB.POSException import ConflictError

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "tests"))

import zasync  # noqa: E402

import pgserver  # noqa: E402
from workers import WorkerProcess, ZEOServer, client, free_port, wait_until  # noqa: E402

THREADS = 4
CONFLICTS = re.compile(r"conflict retries: job (\d+), bookkeeping (\d+) \(on: ([^)]*)\)")


class Small(persistent.Persistent):
    value = 0


def raw_commit_rate(uri: str, seconds: float = 3.0) -> float:
    """Commits per second from one client, each changing one small object."""
    with client(uri) as conn:
        root = conn.root()
        root["bench_small"] = small = Small()
        transaction.commit()
        commits = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            small.value += 1
            transaction.commit()
            commits += 1
        return commits / (time.perf_counter() - started)


def run_once(
    uri: str, directory: Path, workers: int, jobs: int, trickle: float | None = None
) -> dict[str, Any]:
    """Start the workers, put the jobs, time them to the last completion.

    The jobs are put in one commit (a backlog), or with ``trickle`` one per
    commit at that many per second (a steady flow the workers keep up with).
    """
    with client(uri) as conn:
        zasync.install_queues(conn)
        transaction.commit()
    processes = [
        WorkerProcess(
            uri,
            directory / f"worker-{workers}-{'trickle' if trickle else 'backlog'}-{i}.log",
            "--threads",
            str(THREADS),
            "--poll-interval",
            "1",
            "--ping-interval",
            "10",
            "--death-interval",
            "30",
        )
        for i in range(workers)
    ]
    try:
        for process in processes:
            process.wait_for_log("worker ")
        with client(uri) as conn:
            queue = zasync.get_queue(conn)
            started = time.perf_counter()
            put_conflicts = 0
            if trickle is None:
                for _ in range(jobs):
                    queue.put(zasync.Job(time.time))
                transaction.commit()
            for n in range(jobs if trickle is not None else 0):
                while True:  # as an application does: retry the put on a conflict
                    try:
                        queue.put(zasync.Job(time.time))
                        transaction.commit()
                        break
                    except ConflictError:
                        transaction.abort()
                        put_conflicts += 1
                time.sleep(max(0.0, started + (n + 1) / trickle - time.perf_counter()))

            def done() -> bool:
                transaction.begin()
                held = sum(len(a) for da in queue.dispatchers.values() for a in da.values())
                return len(queue) == 0 and held == 0

            wait_until(done, timeout=900, message="jobs never finished")
            elapsed = time.perf_counter() - started
    finally:
        for process in processes:
            process.stop()
    job_conflicts = bookkeeping = 0
    by_class: Counter[str] = Counter()
    for process in processes:
        found = CONFLICTS.search(process.text())
        if found is None:
            raise RuntimeError(f"no conflict count in {process.log}")
        job_conflicts += int(found.group(1))
        bookkeeping += int(found.group(2))
        for part in found.group(3).split(", "):
            name, _, count = part.rpartition(" ")
            if name:
                by_class[name] += int(count)
    return {
        "jobs_per_second": jobs / elapsed,
        "job_conflicts": job_conflicts * 1000 / jobs,
        "bookkeeping_conflicts": bookkeeping * 1000 / jobs,
        "by_class": by_class,
        "put_conflicts": put_conflicts * 1000 / jobs,
    }


class Engine:
    """Fresh databases on one engine, and its servers to stop at the end."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self.directory = directory
        self._servers: list[Any] = []
        self._pg: pgserver.PostgresServer | None = None
        self._pg_uri: str | None = None
        self._databases: list[Any] = []

    def fresh(self, label: str) -> str:
        if self.kind == "zeo":
            server = ZEOServer(
                self.directory / f"{label}.fs", free_port(), self.directory / "zeo.log"
            )
            server.start()
            self._servers.append(server)
            return server.uri
        if self._pg_uri is None:
            self._pg_uri, self._pg = pgserver.server_uri()
        database = pgserver.fresh_database(self._pg_uri)
        self._databases.append(database)
        return database.__enter__()

    def close(self) -> None:
        for database in self._databases:
            database.__exit__(None, None, None)
        for server in self._servers:
            server.stop()
        if self._pg is not None:
            self._pg.remove()


def report(
    kind: str, raw: float, workers: int, jobs: int, trickle: float | None, engine: Any, tmp: Path
) -> None:
    """Run one measurement and print its line (and where its conflicts were)."""
    label = f"w{workers}" + ("" if trickle is None else "-trickle")
    logs = tmp / kind  # one directory per engine: the logs' names repeat
    logs.mkdir(exist_ok=True)
    result = run_once(engine.fresh(label), logs, workers, jobs, trickle)
    rate = result["jobs_per_second"]
    total = result["job_conflicts"] + result["bookkeeping_conflicts"]
    shape = "as a backlog" if trickle is None else f"trickled at {trickle:,.0f}/s"
    print(
        f"[{kind}] {workers} worker(s) x {THREADS} threads, {jobs:,} no-op jobs {shape}: "
        + (f"{rate:,.0f} jobs/s (ratio to raw {rate / raw:.2f}); " if trickle is None else "")
        + f"conflict retries per 1,000 jobs: {total:.1f} "
        f"(job commits {result['job_conflicts']:.1f}, "
        f"bookkeeping {result['bookkeeping_conflicts']:.1f}); "
        f"the application's puts: {result['put_conflicts']:.1f}"
    )
    if result["by_class"]:
        print(
            f"[{kind}]   conflicts were on: "
            + ", ".join(f"{n} {c}" for n, c in result["by_class"].most_common())
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--engines", nargs="+", default=["zeo", "postgres"])
    parser.add_argument("--trickle", type=float, default=100.0, help="jobs/s of the steady flow")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for kind in options.engines:
            engine = Engine(kind, Path(tmp))
            try:
                raw = raw_commit_rate(engine.fresh("raw"))
                print(
                    f"[{kind}] raw commit rate: {raw:,.0f} commits/s (one small object, one client)"
                )
                for workers in options.workers:
                    for trickle in (None, options.trickle):
                        report(kind, raw, workers, options.jobs, trickle, engine, Path(tmp))
            finally:
                engine.close()


if __name__ == "__main__":
    main()
