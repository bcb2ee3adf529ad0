"""Periodic jobs with three real workers and ``kill -9``: every tick runs exactly once.

A schedule ticks every second with ``missed="each"``, so every tick must
yield exactly one job whatever happens.  Three workers run it, on ZEO and on
PostgreSQL; again and again the worker that fired the latest tick is killed
with SIGKILL (and another started in its place), often in the middle of its
next firing.  Afterwards the jobs the schedule put are counted from the
database: their ticks must be every second from the first to the last, none
missing, none twice.

``ZASYNC_PERIODIC_SECONDS`` sets how long the schedule runs (30 s by
default; the fault campaign runs it longer).
"""

from __future__ import annotations

import datetime
import os
import time
import uuid
from collections import Counter

import pytest
import transaction

import zasync
from zasync import COMPLETED, clock
from zasync.model import periodic
from zasync.schema import SCHEDULE_TICK

from support import periodic_work
from workers import WorkerProcess, client, wait_until

pytestmark = pytest.mark.slow

SECONDS = float(os.environ.get("ZASYNC_PERIODIC_SECONDS", "30"))
WORKERS = 3


def start(uri, directory, number):
    worker_uuid = str(uuid.uuid4())
    worker = WorkerProcess(
        uri, directory / f"worker{number}.log", "--threads", "2", "--uuid", worker_uuid
    )
    worker.uuid = worker_uuid
    return worker


def firing_worker(schedule):
    """The UUID of the worker that fired the latest tick (it put the tick's job), or None."""
    last = schedule.last_job
    return None if last is None or last.assignerUUID is None else str(last.assignerUUID)


def test_every_tick_runs_exactly_once_while_the_firing_worker_is_killed(engine_uri, tmp_path):
    with client(engine_uri) as conn:
        queue = zasync.install_queues(conn)[""]
        schedule = zasync.add_schedule(queue, "beat", periodic_work, every=1, missed="each")
        transaction.commit()
        workers = {n: start(engine_uri, tmp_path, n) for n in range(WORKERS)}
        killed = 0
        try:
            began = time.monotonic()
            number = WORKERS
            while time.monotonic() - began < SECONDS:
                time.sleep(0.5 + (killed % 3) * 0.4)  # kill at varied points of a tick
                transaction.begin()
                target = firing_worker(schedule)
                for slot, worker in list(workers.items()):
                    if worker.uuid == target:
                        worker.kill()
                        killed += 1
                        workers[slot] = start(engine_uri, tmp_path, number)
                        number += 1
                        break
            zasync.pause_schedule(queue, "beat")
            transaction.commit()
            last_tick = schedule.last_tick

            def settled() -> bool:
                transaction.begin()
                jobs = _jobs_of(queue, "beat")
                return schedule.last_tick is not None and all(
                    job.status == COMPLETED for job in jobs
                )

            wait_until(settled, message="the schedule's jobs never all finished")
        finally:
            for worker in workers.values():
                worker.stop()
        transaction.begin()
        ticks = Counter(_tick(job) for job in _jobs_of(queue, "beat"))
        assert killed >= 3, "the test never found the firing worker to kill"
        doubled = {t: n for t, n in ticks.items() if n > 1}
        assert not doubled, f"ticks that ran twice: {doubled}"
        first, last = min(ticks), max(ticks)
        assert last >= last_tick - datetime.timedelta(seconds=1)
        expected = int((last - first).total_seconds()) + 1
        missing = expected - len(ticks)
        assert missing == 0, f"{missing} ticks missing between {first} and {last}"
        assert expected >= SECONDS * 0.8
        print(f"{len(ticks)} ticks, each once; {killed} firing workers killed with SIGKILL")


def _jobs_of(queue, name):
    """The jobs the schedule put, wherever they are now (pending, held, completed)."""
    from zasync.ops.queries import iter_jobs

    return [
        job
        for job in iter_jobs(queue._p_jar, queue.name)
        if job.get_annotation(SCHEDULE_TICK, (None,))[0] == name
        and job.callable is not periodic.fire
    ]


def _tick(job):
    return clock.from_stamp(job.get_annotation(SCHEDULE_TICK)[1])
