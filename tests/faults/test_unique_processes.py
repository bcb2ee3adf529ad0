"""Unique keys under concurrent puts from 4 processes, on ZEO and on PostgreSQL: one job per key.

Four real processes put the same 30 keys at the same moment, each put in its
own transaction, retrying conflicts as an application does.  Every process
must end up with the same job for a key, and the queue must hold exactly one
job per key.  Then a worker drains the queue (each job gives its key up as it
starts) and the four processes race again: again one new job per key.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import transaction

import zasync

from processes import python_env
from workers import WorkerProcess, client, wait_until

pytestmark = pytest.mark.slow

PUTTERS = 4
KEYS = 30
PUTTER = Path(__file__).resolve().parents[1] / "unique_putter.py"


def race(uri: str, start: Path) -> list[dict[str, object]]:
    """Start the putters, let them go at once, and return what each printed."""
    processes = [
        subprocess.Popen(
            [sys.executable, str(PUTTER), uri, str(start), str(KEYS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=python_env(),
        )
        for _ in range(PUTTERS)
    ]
    start.touch()
    reports = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    start.unlink()
    return reports


def keyed_jobs(queue) -> Counter[str]:
    return Counter(job._unique[0] for job in queue if job._unique is not None)


def test_four_processes_putting_the_same_keys_make_one_job_per_key(engine_uri, tmp_path):
    with client(engine_uri) as conn:
        zasync.install_queues(conn)
        transaction.commit()
    reports = race(engine_uri, tmp_path / "go")
    for key in (f"key-{n}" for n in range(KEYS)):
        assert len({report["returned"][key] for report in reports}) == 1, key
    with client(engine_uri) as conn:
        queue = zasync.get_queue(conn)
        counts = keyed_jobs(queue)
        assert len(counts) == KEYS and set(counts.values()) == {1}
        assert len(queue) == KEYS
        first_round = {job._p_oid for job in queue}

        worker = WorkerProcess(engine_uri, tmp_path / "worker.log", "--agent", "/main:4+4")
        try:
            first_jobs = list(queue)

            def drained() -> bool:
                # Finished, not only claimed: a job claimed ahead and handed back
                # when the worker stops is pending again and takes its key again.
                transaction.begin()
                return all(job.status == zasync.COMPLETED for job in first_jobs)

            wait_until(drained, message="the worker never drained the queue")
        finally:
            worker.stop()
        transaction.begin()
        assert queue._unique is None or len(queue._unique) == 0  # every key given up

    again = race(engine_uri, tmp_path / "go")
    for key in (f"key-{n}" for n in range(KEYS)):
        assert len({report["returned"][key] for report in again}) == 1, key
    with client(engine_uri) as conn:
        queue = zasync.get_queue(conn)
        counts = keyed_jobs(queue)
        assert len(counts) == KEYS and set(counts.values()) == {1}
        assert not first_round & {job._p_oid for job in queue}
    conflicts = sum(r["conflicts"] for r in reports + again)
    print(f"{PUTTERS} putters x {KEYS} keys x 2 rounds: {conflicts} conflicting commits retried")
