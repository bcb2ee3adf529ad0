"""Worker settings are checked before anything starts; a worker that cannot claim exits."""

from __future__ import annotations

import pytest

from test_cli import zasync_cli
from workers import WorkerProcess


@pytest.fixture
def db(tmp_path):
    return f"file://{tmp_path / 'Data.fs'}"


@pytest.mark.slow
def test_a_worker_whose_poll_thread_dies_exits_non_zero(db, tmp_path):
    """It used to stay up, listed alive, claiming nothing: now a supervisor can restart it."""
    worker = WorkerProcess(db, tmp_path / "worker.log", "--filter", "support.exit_in_poll_thread")
    try:
        worker.wait_for_log("worker ")
        zasync_cli("--db", db, "put", "operator.mul", "6", "7")  # the filter meets it
        assert worker.wait(timeout=120) == 1
    finally:
        worker.stop()
    log = worker.text()
    assert "CRITICAL zasync.events: the poll thread of dispatcher" in log
    assert "ERROR zasync.events: worker" in log and "its poll thread died" in log
    assert "stopped; conflict retries" in log  # it stopped cleanly, handing its jobs back
