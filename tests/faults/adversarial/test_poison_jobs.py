"""Poison jobs with real worker processes: one job no worker can load stops nothing.

A job whose module a deploy removed, or whose record is damaged on disk, is
put first and 20 healthy jobs behind it.  A real ``zasync worker`` must run
all 20, quarantine the bad job with one ERROR line, stay alive, and every
operator tool must work on the database and clear the bad job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import transaction
from ZODB.FileStorage import FileStorage
from ZODB.utils import p64

import zasync
from zasync import COMPLETED, Job
from zasync.ops import metrics, queries, views

import bad_jobs
from processes import SRC, TESTS, python_env
from workers import WorkerProcess, client, wait_until

pytestmark = pytest.mark.slow

HEALTHY = 20


@pytest.fixture
def uri(tmp_path):
    return f"file://{tmp_path / 'Data.fs'}"


def zasync_cli(
    uri: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zasync", "--db", uri, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env or python_env(),
    )


def put_healthy(uri: str) -> list[int]:
    with client(uri) as conn:
        queue = zasync.install_queues(conn)[""]
        jobs = [queue.put(Job(bad_jobs.healthy, n)) for n in range(HEALTHY)]
        transaction.commit()
        return [views.job_id(job) for job in jobs]


def statuses(uri: str, ids: list[int]) -> list[str]:
    with client(uri) as conn:
        return [str(conn.get(p64(i)).status) for i in ids]


def run_worker_until_healthy_done(uri: str, log: Path, healthy: list[int]) -> WorkerProcess:
    worker = WorkerProcess(uri, log)
    try:
        wait_until(
            lambda: statuses(uri, healthy) == [str(COMPLETED)] * HEALTHY,
            timeout=120,
            message="healthy jobs behind the poison job never completed",
        )
        with client(uri) as conn:
            results = [conn.get(p64(i)).result for i in healthy]
        assert results == [n * 2 for n in range(HEALTHY)]
    except BaseException:
        worker.stop()
        raise
    return worker


def quarantine_of(uri: str) -> list[tuple[int, str]]:
    with client(uri) as conn:
        return [(entry.id, entry.cause) for entry in zasync.get_queue(conn).quarantined]


def assert_operator_tools_work(uri: str, bad: int) -> None:
    listed = zasync_cli(uri, "jobs", "--state", "quarantined", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [row["id"] for row in json.loads(listed.stdout)] == [bad]
    everything = zasync_cli(uri, "jobs", "--limit", "100", "--json")
    assert everything.returncode == 0, everything.stderr
    assert bad in [row["id"] for row in json.loads(everything.stdout)]
    counted = zasync_cli(uri, "count", "--state", "quarantined")
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.split()[0] == "1"
    shown = zasync_cli(uri, "job", str(bad))
    assert shown.returncode == 0, shown.stderr
    assert "quarantined" in shown.stdout
    assert zasync_cli(uri, "jobstats").returncode == 0
    assert zasync_cli(uri, "dispatchers").returncode == 0
    assert zasync_cli(uri, "status").returncode == 0
    with client(uri) as conn:
        exposition = metrics.database_exposition(conn.db()).decode()
    assert 'zasync_jobs{queue="",state="quarantined"} 1.0' in exposition


def test_a_job_whose_module_was_removed_after_put_is_quarantined(uri, tmp_path):
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    (deploy / "vanishing_work.py").write_text("def work(n):\n    return n\n")
    with_module = python_env(PYTHONPATH=os.pathsep.join([str(deploy), str(SRC), str(TESTS)]))
    put = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import transaction, zasync, vanishing_work
                from zasync.storage.database import open_database
                opened = open_database({uri!r})
                conn = opened.db.open()
                queue = zasync.install_queues(conn)[""]
                job = queue.put(zasync.Job(vanishing_work.work, 1))
                transaction.commit()
                print(int.from_bytes(job._p_oid, "big"))
                conn.close()
                opened.close()
            """),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=with_module,
    )
    assert put.returncode == 0, put.stderr
    bad = int(put.stdout)
    healthy = put_healthy(uri)
    (deploy / "vanishing_work.py").unlink()  # the deploy that removed it

    log = tmp_path / "worker.log"
    worker = run_worker_until_healthy_done(uri, log, healthy)
    try:
        assert quarantine_of(uri) == [
            (
                bad,
                "its callable vanishing_work.work cannot be imported (module removed or renamed?)",
            )
        ]
        assert worker.text().count("quarantined out of queue") == 1
        with client(uri) as conn:
            states = [d["state"] for d in queries.dispatchers(conn)]
        assert states == ["alive"]
        assert_operator_tools_work(uri, bad)
    finally:
        worker.stop()

    # The code comes back: a worker that has it runs the job after `zasync retry`.
    (deploy / "vanishing_work.py").write_text("def work(n):\n    return n\n")
    retried = zasync_cli(uri, "retry", str(bad), env=with_module)
    assert retried.returncode == 0, retried.stderr
    assert quarantine_of(uri) == []
    worker = WorkerProcess(
        uri, tmp_path / "worker2.log", env={"PYTHONPATH": with_module["PYTHONPATH"]}
    )
    try:
        wait_until(lambda: statuses(uri, [bad]) == [str(COMPLETED)], timeout=120)
        with client(uri) as conn:
            assert conn.get(p64(bad)).result == 1
    finally:
        worker.stop()


def corrupt_record(path: Path, oid: int) -> None:
    """Overwrite a record's data in a FileStorage file, keeping its length."""
    storage = FileStorage(str(path), read_only=True)
    try:
        position = storage._lookup_pos(p64(oid))
        header = storage._read_data_header(position)
        start, length = position + 42, header.plen  # 42: the data record header
    finally:
        storage.close()
    with open(path, "r+b") as data:
        data.seek(start)
        data.write(b"\xff" * length)


def put_corrupted(uri: str, path: Path) -> int:
    """Put a job, then damage its record on disk; its id."""
    with client(uri) as conn:
        queue = zasync.install_queues(conn)[""]
        poison = queue.put(Job(bad_jobs.healthy, 100))
        transaction.commit()
        bad = views.job_id(poison)
    assert bad is not None
    corrupt_record(path, bad)
    return bad


def test_a_job_whose_record_is_corrupted_on_disk_is_quarantined(uri, tmp_path):
    bad = put_corrupted(uri, tmp_path / "Data.fs")
    healthy = put_healthy(uri)

    log = tmp_path / "worker.log"
    worker = run_worker_until_healthy_done(uri, log, healthy)
    try:
        [(quarantined, cause)] = quarantine_of(uri)
        assert quarantined == bad
        assert cause.startswith("its record cannot be loaded: ")
        assert worker.text().count("quarantined out of queue") == 1
        assert_operator_tools_work(uri, bad)
        cancelled = zasync_cli(uri, "cancel", str(bad))
        assert cancelled.returncode == 0, cancelled.stderr
        assert quarantine_of(uri) == []
        counted = zasync_cli(uri, "count", "--state", "quarantined")
        assert counted.stdout.split()[0] == "0"
    finally:
        worker.stop()


def test_an_unloadable_pending_job_is_removed_without_a_worker(uri, tmp_path):
    bad = put_corrupted(uri, tmp_path / "Data.fs")
    listed = zasync_cli(uri, "jobs", "--state", "unloadable", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [row["id"] for row in json.loads(listed.stdout)] == [bad]
    removed = zasync_cli(uri, "remove", str(bad))
    assert removed.returncode == 0, removed.stderr
    with client(uri) as conn:
        assert len(zasync.get_queue(conn)) == 0
