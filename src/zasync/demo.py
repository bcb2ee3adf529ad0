"""A demonstration workload through a real worker: ``python -m zasync.demo``.

It starts ``zasync worker`` on an embedded FileStorage file, then, as an
application would, from this separate process:

* puts one ``parallel`` job whose parts each compute the sum of squares of a
  slice of 0..N-1, combined by a postprocess job into the total;
* limits the parts with a quota (``cpu``, fewer slots than the worker's
  threads), and gives each part a callback that adds its slice to a
  persistent tally (concurrent callbacks conflict and are retried);
* shows a progress bar while the worker runs the parts, checks the total
  against the closed formula, and tells how to inspect the database.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import persistent
import transaction
from rich.console import Console
from rich.progress import Progress

from zasync.interfaces import COMPLETED
from zasync.model.job import Job
from zasync.model.patterns import parallel
from zasync.model.queue import get_queues
from zasync.storage.database import open_database
from zasync.storage.embedded import is_served


def square_sum(start: int, stop: int) -> int:
    """The sum of i*i for start <= i < stop: one slice of the computation."""
    return sum(i * i for i in range(start, stop))


def combine(*parts: Any) -> int:
    """The postprocess: add up the slices (a failed slice fails the whole)."""
    return sum(part.result for part in parts)


class Tally(persistent.Persistent):  # type: ignore[misc]  # persistent is untyped
    """Where the callbacks record finished slices."""

    def __init__(self) -> None:
        self.total = 0
        self.slices = 0


def record(tally: Tally, result: int) -> None:
    """Callback of each slice: add its result to the tally."""
    tally.total += result
    tally.slices += 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demonstration; return the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m zasync.demo", description=__doc__)
    parser.add_argument("--path", default=os.path.join("var", "demo", "Data.fs"))
    parser.add_argument("--jobs", type=int, default=200, help="number of slices (jobs)")
    parser.add_argument("--slice", type=int, default=50_000, help="numbers per slice")
    parser.add_argument("--threads", type=int, default=4, help="the worker's threads")
    options = parser.parse_args(argv)
    if options.jobs < 1 or options.slice < 1 or options.threads < 2:
        parser.error("--jobs and --slice must be positive, --threads at least 2")
    console = Console()
    path = os.path.abspath(options.path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    uri = f"file://{path}"
    log_path = f"{path}.worker.log"
    console.print(f"starting a worker on {uri} (its log: {log_path})")
    with open(log_path, "ab") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "zasync",
                "--db",
                uri,
                "worker",
                "--threads",
                str(options.threads),
                "--poll-interval",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait(lambda: is_served(path) or worker.poll() is not None, "the worker never started")
        if worker.poll() is not None:
            console.print(f"[red]the worker exited; see {log_path}[/red]")
            return 1
        return _run(uri, options.jobs, options.slice, options.threads, console)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)


def _wait(condition: Any, message: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(message)
        time.sleep(0.05)


def _run(uri: str, jobs: int, size: int, threads: int, console: Console) -> int:
    # Run as ``python -m zasync.demo``, this module is ``__main__``, which the
    # worker cannot import: the jobs must name the functions by their module.
    from zasync import demo as named

    with open_database(uri) as opened:
        conn = opened.db.open()

        def queue_installed() -> bool:
            transaction.begin()
            return "" in get_queues(conn) if "zasync" in conn.root() else False

        _wait(queue_installed, "the worker never installed the queues")
        queue = get_queues(conn)[""]
        if "cpu" not in queue.quotas:
            queue.quotas.create("cpu", size=threads - 1)
        tally = conn.root()["demo-tally"] = named.Tally()
        parts = []
        for index in range(jobs):
            part = Job(named.square_sum, index * size, (index + 1) * size)
            part.quota_names = ("cpu",)
            part.addCallback(Job(named.record, tally))
            parts.append(part)
        main_job = queue.put(parallel(*parts, postprocess=named.combine))
        transaction.commit()
        console.print(
            f"put a parallel job of {jobs} slices (quota 'cpu': {threads - 1} at once), "
            "each with a callback"
        )
        started = time.monotonic()
        with Progress(console=console) as progress:
            task = progress.add_task("slices done", total=jobs)
            while True:
                transaction.begin()
                progress.update(task, completed=sum(p.status == COMPLETED for p in parts))
                if main_job.status == COMPLETED:
                    break
                time.sleep(0.1)
        elapsed = time.monotonic() - started
        n = jobs * size
        expected = (n - 1) * n * (2 * n - 1) // 6
        ok = main_job.result == expected and tally.total == expected and tally.slices == jobs
        console.print(f"sum of squares below {n:,}: {main_job.result:,} ({elapsed:.1f} s)")
        console.print(f"closed formula:          {expected:,} -> {'correct' if ok else 'WRONG'}")
        console.print(f"tally kept by the callbacks: {tally.total:,} from {tally.slices} slices")
        console.print("inspect it (the worker has stopped; the file stays):")
        console.print(f"  .venv/bin/zasync --db {uri} status")
        console.print(
            f"  .venv/bin/python -c \"import ZODB; c = ZODB.DB('{uri[len('file://') :]}').open(); "
            "print(c.root()['demo-tally'].total)\""
        )
        conn.close()
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
