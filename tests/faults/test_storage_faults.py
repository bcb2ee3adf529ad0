"""Storage failures at a job's commit are not the job's fault (real disk, real server).

* A full disk: a worker serves an embedded file on a real 4 MB tmpfs, a
  filler leaves ~200 KB, and 60 jobs each store ~20 KB.  Once the disk is
  full the filler goes; every job must then complete (none failed), the
  file must be sound and no larger than its data, and the worker's log
  must hold no more than a handful of lines about the failure.
* A PostgreSQL outage: the server stops while jobs finish, so that their
  commits meet it; it comes back.  No job fails, none is treated as
  interrupted (which would count against its retry limit), and zasync logs
  no CRITICAL or ERROR line, at the outage or at the worker's clean stop.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import transaction
from BTrees.IOBTree import IOBTree
from persistent.mapping import PersistentMapping

import zasync
from zasync import COMPLETED, Failure, Job

import support
from pgserver import PostgresServer, fresh_database
from workers import WorkerProcess, client, free_port, lines, touch, wait_until

pytestmark = pytest.mark.slow

JOBS = 60
JOB_BYTES = 20_000
LEFT_FREE = 200_000

#: A log line that is not about ordinary work: anything but INFO lines.
_ORDINARY = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ INFO ")


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 4 MB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """A file taking all of ``disk``'s free space but ``leave`` bytes."""
    stats = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * (stats.f_bavail * stats.f_frsize - leave))
    return filler


def transactions_end(path: Path) -> int:
    """Where the last whole transaction of a FileStorage file ends (the storage's checks pass)."""
    from ZODB.FileStorage import FileStorage

    storage = FileStorage(str(path), read_only=True)
    try:
        for _ in storage.iterator():  # reads and checks every record
            pass
        return int(storage._pos)
    finally:
        storage.close()


def all_completed(uri: str, oids: list[bytes]) -> bool:
    """Every job of ``oids`` is COMPLETED, read in a new client."""
    with client(uri) as conn:
        return all(conn.get(oid).status == COMPLETED for oid in oids)


def failure_lines(text: str) -> list[str]:
    """The lines of a worker's log that are neither INFO lines nor its stop."""
    return [
        line
        for line in text.splitlines()
        if line.strip() and not _ORDINARY.match(line) and "stopping gracefully" not in line
    ]


def test_a_full_disk_fails_no_job_and_floods_no_log(small_disk, tmp_path):
    data_fs = small_disk / "Data.fs"
    uri = f"file://{data_fs}"
    with client(uri) as conn:
        queue = zasync.install_queues(conn)[""]
        conn.root()["stored"] = IOBTree()
        transaction.commit()
        jobs = [queue.put(Job(support.store_bytes, n, JOB_BYTES)) for n in range(JOBS)]
        transaction.commit()
        oids = [job._p_oid for job in jobs]
    before = data_fs.stat().st_size
    filler = fill(small_disk, LEFT_FREE)
    worker = WorkerProcess(uri, tmp_path / "worker.log", "--threads", "2")
    try:
        worker.wait_for_log("No space left on device")
        filler.unlink()

        wait_until(
            lambda: all_completed(uri, oids), message="jobs never completed once there was space"
        )
        with client(uri) as conn:
            results = [conn.get(oid).result for oid in oids]
            stored = conn.root()["stored"]
            sizes = [len(stored[n].data) for n in range(JOBS)]
    finally:
        worker.stop()
    failed = [r for r in results if isinstance(r, Failure)]
    assert failed == [] and results == list(range(JOBS))
    assert sizes == [JOB_BYTES] * JOBS
    # Sound, with nothing after its last transaction, and no larger than what it holds.
    assert transactions_end(data_fs) == data_fs.stat().st_size
    assert data_fs.stat().st_size < before + 2 * JOBS * JOB_BYTES
    about_it = failure_lines(worker.text())
    assert len(about_it) <= 5, "\n".join(about_it[:80])
    assert any("No space left on device" in line for line in about_it)


@pytest.fixture
def postgres():
    """A private PostgreSQL server (the test restarts it) and a fresh database on it."""
    server = PostgresServer(free_port())
    server.start()
    try:
        with fresh_database(server.uri) as uri:
            yield server, uri
    finally:
        server.remove()


OUTAGE_JOBS = 4


def test_a_postgresql_outage_at_commit_fails_no_job_and_counts_no_interruption(postgres, tmp_path):
    server, uri = postgres
    release, notes = tmp_path / "release", tmp_path / "commits"
    markers = [tmp_path / f"job{n}.started" for n in range(OUTAGE_JOBS)]
    worker = WorkerProcess(uri, tmp_path / "worker.log", "--threads", str(OUTAGE_JOBS))
    try:
        worker.wait_for_log("worker ")
        with client(uri) as conn:
            queue = zasync.install_queues(conn)[""]
            transaction.commit()
            jobs = [
                queue.put(
                    Job(support.wait_and_note_commits, str(marker), str(release), str(notes)),
                    retry_policy_factory=support.NoInterruptions,
                )
                for marker in markers
            ]
            transaction.commit()
            oids = [job._p_oid for job in jobs]
        wait_until(lambda: all(lines(m) for m in markers), message="jobs never started")

        server.stop()
        touch(release)  # the jobs return; their commits meet the outage
        wait_until(
            lambda: lines(notes).count("False") >= OUTAGE_JOBS,
            message="the jobs' commits never met the outage",
        )
        server.start()

        wait_until(
            lambda: all_completed(uri, oids), message="jobs never completed after the outage"
        )
        with client(uri) as conn:
            outcomes = [conn.get(oid).result for oid in oids]
            retry_data = [dict(conn.get(oid)._retry_policy.data) for oid in oids]
    finally:
        worker.stop()
    assert outcomes == [42] * OUTAGE_JOBS
    # The outage was waited out: not an interruption (which counts against the
    # job's limit), nor a conflict; each job ran again after its failed commit.
    assert [d.get("interruptions", 0) for d in retry_data] == [0] * OUTAGE_JOBS
    assert [d.get("transaction_error", 0) for d in retry_data] == [0] * OUTAGE_JOBS
    assert all(len(lines(m)) == 2 for m in markers)
    text = worker.text()
    assert "unexpected error" not in text
    # zasync reports the outage in WARNING lines (RelStorage adds its own ERRORs).
    serious = [line for line in text.splitlines() if re.search(r" (ERROR|CRITICAL) zasync", line)]
    assert serious == [], "\n".join(serious)
    stop = text[text.index("stopping gracefully") :]
    assert not re.search(r" (ERROR|CRITICAL) |Traceback", stop), stop


def _commit_blobs(db: Any, start: int, count: int, size: int) -> list[int]:
    """Try ``count`` commits, each adding one object of ``size`` bytes; the numbers that committed."""
    committed = []
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    try:
        for number in range(start, start + count):
            conn.root()[number] = PersistentMapping(payload=bytes([number % 251]) * size)
            try:
                tm.commit()
            except OSError:
                tm.abort()
            else:
                committed.append(number)
    finally:
        tm.abort()
        conn.close()
    return committed


def test_a_full_disk_leaves_the_file_sound(small_disk):
    """Commits failing for lack of space, then succeeding again, leave only what committed."""
    from ZODB import DB
    from ZODB.FileStorage import FileStorage

    from zasync.storage.filestorage import SafeFileStorage

    path = small_disk / "Data.fs"
    db = DB(SafeFileStorage(str(path)))
    committed = _commit_blobs(db, 0, 5, 20_000)
    filler = fill(small_disk, leave=70_000)
    committed += _commit_blobs(db, 100, 12, 20_000)  # some fit, then each fails
    filler.unlink()
    committed += _commit_blobs(db, 200, 10, 20_000)
    db.close()
    (small_disk / "Data.fs.index").unlink(missing_ok=True)  # read every record again
    problems = []
    try:
        reopened = DB(FileStorage(str(path), read_only=True))
        conn = reopened.open()
        root = conn.root()
        for number in committed:
            if root[number]["payload"] != bytes([number % 251]) * 20_000:
                problems.append(f"object {number} reads wrong")
        if sorted(root.keys()) != sorted(committed):
            problems.append(f"keys {sorted(root.keys())} != committed {sorted(committed)}")
        conn.close()
        reopened.close()
    except Exception as e:
        problems.append(f"{type(e).__name__}: {e}")
    assert set(range(200, 210)) <= set(committed)
    assert len(committed) < 5 + 12 + 10  # the disk did fill
    assert problems == []
