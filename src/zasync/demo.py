"""A demonstration workload on an embedded FileStorage file: ``python -m zasync.demo``.

It computes the sum of the squares of 0..N-1 in slices: one job per slice, all
put in one transaction, each with a callback that records its slice in a
persistent tally.  The jobs are then claimed and run through an agent in this
process, with a progress bar, and the total is checked against the closed
formula.  The database file stays behind for inspection.
"""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import Sequence
from typing import Any

import persistent
import transaction
import ZODB
from rich.console import Console
from rich.progress import Progress
from ZODB.FileStorage import FileStorage

from zasync.agent import Agent
from zasync.job import Job
from zasync.queue import install_queues


def square_sum(start: int, stop: int) -> int:
    """The sum of i*i for start <= i < stop: one slice of the computation."""
    return sum(i * i for i in range(start, stop))


class Tally(persistent.Persistent):  # type: ignore[misc]  # persistent is untyped
    """Where the callbacks record finished slices."""

    def __init__(self) -> None:
        self.total = 0
        self.slices = 0


def record(tally: Tally, result: int) -> None:
    """Callback: add a slice's result to the tally."""
    tally.total += result
    tally.slices += 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demonstration; return the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m zasync.demo", description=__doc__)
    parser.add_argument("--path", default=os.path.join("var", "demo", "Data.fs"))
    parser.add_argument("--jobs", type=int, default=200, help="number of slices (jobs)")
    parser.add_argument("--slice", type=int, default=20_000, help="numbers per slice")
    options = parser.parse_args(argv)
    if options.jobs < 1 or options.slice < 1:
        parser.error("--jobs and --slice must be positive")
    console = Console()
    os.makedirs(os.path.dirname(options.path) or ".", exist_ok=True)
    db = ZODB.DB(FileStorage(options.path))
    try:
        return _run(db, options.jobs, options.slice, options.path, console)
    finally:
        db.close()


def _run(db: Any, jobs: int, size: int, path: str, console: Console) -> int:
    conn = db.open()
    queue = install_queues(conn)[""]
    tally = conn.root()["demo-tally"] = Tally()
    for index in range(jobs):
        job = queue.put(Job(square_sum, index * size, (index + 1) * size))
        job.addCallback(Job(record, tally))
    transaction.commit()
    console.print(f"put {jobs} jobs into queue '' of {path} (one transaction)")

    dispatcher = queue.dispatchers.register(uuid.uuid4())
    dispatcher["main"] = agent = Agent(size=jobs)
    dispatcher.activate()
    transaction.commit()
    with Progress(console=console) as progress:
        task = progress.add_task("running jobs", total=jobs)
        while (job := agent.claimJob()) is not None:
            transaction.commit()
            job()
            progress.advance(task)
    expected = (jobs * size - 1) * (jobs * size) * (2 * jobs * size - 1) // 6
    ok = tally.total == expected and tally.slices == jobs
    console.print(f"sum of squares below {jobs * size:,}: {tally.total:,}")
    console.print(f"closed formula: {expected:,} -> {'correct' if ok else 'WRONG'}")
    console.print(f"completed jobs filed in the agent: {len(agent.completed)}")
    console.print(
        "inspect it: .venv/bin/python -c "
        f"\"import ZODB; c = ZODB.DB('{path}').open(); print(c.root()['demo-tally'].total)\""
    )
    dispatcher.deactivate()
    transaction.commit()
    conn.close()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
