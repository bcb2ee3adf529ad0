"""Start order on the embedded file: any process may come first, any may leave first.

The processes are real: ``zasync worker``, ``zasync web`` and small
application scripts, each with its log in a file.  Whichever opens the file
first serves it; when it exits, a client serves it next.  Every scenario ends
with jobs put after the change completed, and no process logged an ERROR.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
import transaction

import zasync
from zasync import COMPLETED, Job

from processes import python_env
from workers import WorkerProcess, client, free_port, touch, wait_until

pytestmark = pytest.mark.slow

_APP = """
    import logging, os, sys, time
    import transaction
    import zasync
    from zasync.storage.database import open_database

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    uri, folder = sys.argv[1], sys.argv[2]
    with open_database(uri) as opened:
        conn = opened.db.open()
        for attempt in transaction.manager.attempts(5):
            with attempt:
                zasync.install_queues(conn)
        open(os.path.join(folder, "app.ready"), "w").write(opened.kind)
        while not os.path.exists(os.path.join(folder, "app.stop")):
            time.sleep(0.02)
        conn.close()
    print("app stopped", flush=True)
"""


class App:
    """An application process holding the database open until told to stop."""

    def __init__(self, uri: str, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(exist_ok=True)
        self.log = folder / "app.log"
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(_APP), uri, str(folder)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=python_env(),
            )

    def wait_ready(self) -> str:
        ready = self.folder / "app.ready"
        wait_until(lambda: ready.exists() or self.process.poll() is not None)
        assert self.process.poll() is None, self.log.read_text()
        wait_until(lambda: ready.read_text())
        return ready.read_text()

    def stop(self) -> None:
        touch(self.folder / "app.stop")
        assert self.process.wait(60) == 0, self.log.read_text()


class Web:
    """``zasync web`` on a free loopback port."""

    def __init__(self, uri: str, folder: Path) -> None:
        self.port = free_port()
        self.log = folder / "web.log"
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "zasync", "-v", "--db", uri, "web", "--port", str(self.port),
                 "--token", "secret-for-tests"],
                stdout=out, stderr=subprocess.STDOUT, env=python_env(),
            )  # fmt: skip

    def answers(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        try:
            url = f"http://127.0.0.1:{self.port}/api/overview"
            with urllib.request.urlopen(url, timeout=10) as response:
                return bool(json.loads(response.read()) is not None)
        except OSError:
            return False

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(60) == 0, self.log.read_text()  # SIGTERM stops it cleanly


def _errors(*logs: Path) -> list[str]:
    found = []
    for log in logs:
        text = log.read_text(errors="replace") if log.exists() else ""
        found += [line for line in text.splitlines() if "ERROR" in line or "CRITICAL" in line]
        found += [line for line in text.splitlines() if line.startswith("Traceback")]
    return found


def _put_and_wait(uri: str, value: int) -> None:
    """Put a job from a new process (a client, or the file's owner) and wait for it to complete."""
    with client(uri) as conn:
        for attempt in transaction.manager.attempts(5):
            with attempt:
                job = zasync.get_queue(conn).put(Job(pow, value, 2))

        def done() -> bool:
            transaction.begin()
            return job.status == COMPLETED

        wait_until(done, message=f"job {value} never completed")
        assert job.result == value * value


def test_a_worker_started_after_the_application_runs_its_jobs(tmp_path):
    uri = f"file://{tmp_path / 'Data.fs'}"
    app = App(uri, tmp_path)
    worker = None
    try:
        assert app.wait_ready() == "file"  # the application opened the file first
        worker = WorkerProcess(uri, tmp_path / "worker.log")
        worker.wait_for_log("serving")
        _put_and_wait(uri, 3)
    finally:
        app.stop()
        if worker is not None:
            worker.stop()
    assert not _errors(app.log, tmp_path / "worker.log")


def test_when_the_serving_process_exits_a_client_serves_next(tmp_path):
    uri = f"file://{tmp_path / 'Data.fs'}"
    app = App(uri, tmp_path)
    assert app.wait_ready() == "file"
    worker = WorkerProcess(uri, tmp_path / "worker.log")
    try:
        worker.wait_for_log("serving")
        _put_and_wait(uri, 4)
        app.stop()  # the server goes: the worker serves next
        worker.wait_for_log("took over serving")
        _put_and_wait(uri, 5)
        again = App(uri, tmp_path / "again")
        assert again.wait_ready() == "file-client"
        again.stop()
    finally:
        worker.stop()
    assert worker.process.returncode == 0
    assert not _errors(app.log, tmp_path / "worker.log")


def test_processes_started_together_all_work_and_stop_cleanly_in_any_order(tmp_path):
    uri = f"file://{tmp_path / 'Data.fs'}"
    # All three at once, on a file that does not exist yet.
    worker = WorkerProcess(uri, tmp_path / "worker.log")
    web = Web(uri, tmp_path)
    app = App(uri, tmp_path)
    try:
        app.wait_ready()
        worker.wait_for_log("serving")
        wait_until(web.answers, message="the dashboard never answered")
        _put_and_wait(uri, 6)
        # Whoever serves, stop the worker first: the others carry on, and a
        # new worker runs the next job.
        worker.stop()
        assert worker.process.returncode == 0
        wait_until(web.answers, message="the dashboard stopped answering")
        worker = WorkerProcess(uri, tmp_path / "worker2.log")
        worker.wait_for_log("serving")
        _put_and_wait(uri, 7)
        app.stop()
        wait_until(web.answers, message="the dashboard stopped answering")
        _put_and_wait(uri, 8)
    finally:
        for process in (app, web, worker):
            if process.process.poll() is None:
                process.stop()
    logs = [tmp_path / "worker.log", tmp_path / "worker2.log", web.log, app.log]
    assert not _errors(*logs)


def test_stopping_the_serving_worker_while_a_client_is_connected_logs_no_error(tmp_path):
    uri = f"file://{tmp_path / 'Data.fs'}"
    worker = WorkerProcess(uri, tmp_path / "worker.log")
    worker.wait_for_log("serving")
    app = App(uri, tmp_path)
    try:
        assert app.wait_ready() == "file-client"
        worker.stop()
        assert worker.process.returncode == 0
        wait_until(lambda: "took over serving" in app.log.read_text())
    finally:
        app.stop()
        worker.stop()
    assert not _errors(app.log, tmp_path / "worker.log")
    assert os.path.exists(tmp_path / "Data.fs")


def test_a_worker_starting_while_short_lived_processes_open_the_file_runs_jobs(tmp_path):
    """Commands that serve the file for a moment, then leave, while a worker starts.

    The worker may find the file served by one of them and lose that server
    before its first connection: it then serves the file itself.
    """
    uri = f"file://{tmp_path / 'Data.fs'}"
    with client(uri) as conn:
        zasync.install_queues(conn)
        transaction.commit()
    worker = WorkerProcess(uri, tmp_path / "worker.log")
    try:
        while "serving" not in worker.text():
            assert worker.process.poll() is None, worker.text()
            with client(uri) as conn:  # serves the file, or is a client, for a moment
                conn.root()
        _put_and_wait(uri, 10)
    finally:
        worker.stop()
    assert worker.process.returncode == 0
    assert not _errors(tmp_path / "worker.log")
