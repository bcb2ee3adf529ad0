"""Time limits from the command line: put, queue defaults, worker flags, the job view."""

from __future__ import annotations

import json

import transaction

import zasync

from processes import zasync_cli
from workers import WorkerProcess, client, wait_until


def cli_json(db, *args):
    return json.loads(zasync_cli("--db", db, *args, "--json").stdout)


def cli_error(db, *args, status=1):
    done = zasync_cli("--db", db, *args, check=False)
    assert done.returncode == status, done.stdout
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr


def _empty_database(tmp_path):
    db = f"file://{tmp_path / 'Data.fs'}"
    with client(db) as conn:
        zasync.install_queues(conn)
        transaction.commit()
    return db


def test_a_worker_stops_a_job_past_the_limit_put_with_it(tmp_path):
    db = _empty_database(tmp_path)
    slow = cli_json(db, "put", "support.write_then_spin", "cli", "--job-timeout", "1s")["oid"]
    quick = cli_json(db, "put", "operator.mul", "6", "7", "--job-timeout", "1m")["oid"]
    shown = zasync_cli("--db", db, "job", str(slow)).stdout
    assert "timeout:        1.0" in shown
    worker = WorkerProcess(db, tmp_path / "worker.log", "--threads", "1")
    try:
        wait_until(
            lambda: cli_json(db, "job", str(slow))["outcome"] == "failed",
            message="the job past its limit was never stopped",
        )
        info = cli_json(db, "job", str(slow))
        assert info["error"] == "the job ran longer than its time limit of 1 s"
        assert info["timeout"] == 1.0
        wait_until(lambda: cli_json(db, "job", str(quick))["outcome"] == "succeeded")
        worker.wait_for_log("stopped: the job ran longer than its time limit of 1 s")
    finally:
        worker.stop()
    with client(db) as conn:
        assert "cli" not in conn.root()  # what the job wrote was never committed


def test_the_worker_flag_and_the_queue_default(tmp_path):
    db = _empty_database(tmp_path)
    set_default = cli_json(db, "queue", "timeout", "", "10m")
    assert set_default == {"queue": "", "default_timeout": 600.0, "was": None}
    assert "no default time limit" in zasync_cli("--db", db, "queue", "timeout", "", "none").stdout
    spinning = cli_json(db, "put", "support.write_then_spin", "agent-flag")["oid"]
    worker = WorkerProcess(db, tmp_path / "worker.log", "--threads", "1", "--timeout", "1")
    try:
        worker.wait_for_log("time limit 1 s")
        wait_until(lambda: cli_json(db, "job", str(spinning))["outcome"] == "failed")
        assert "time limit of 1 s" in cli_json(db, "job", str(spinning))["error"]
    finally:
        worker.stop()


def test_bad_limits_are_one_line_errors_and_change_nothing(tmp_path):
    db = _empty_database(tmp_path)
    assert "more than 0 seconds" in cli_error(
        db, "put", "operator.mul", "2", "3", "--job-timeout", "0"
    )
    assert "not a duration" in cli_error(
        db, "put", "operator.mul", "2", "3", "--job-timeout", "soon"
    )
    assert cli_json(db, "count")["count"] == 0
    assert "not a duration" in cli_error(db, "queue", "timeout", "", "--", "-5")
    assert "not a duration" in cli_error(db, "queue", "timeout", "", "later")
    assert "more than 0 seconds" in cli_error(db, "queue", "timeout", "", "0")
    with client(db) as conn:
        assert zasync.install_queues(conn)[""].default_timeout is None
    assert "--timeout: must be > 0" in cli_error(db, "worker", "--timeout", "0", status=2)
    assert "cannot have a timeout" in cli_error(
        db, "worker", "--timeout", "5", "--batch", "4", status=2
    )
