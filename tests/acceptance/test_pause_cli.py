"""``zasync queue pause`` and ``resume`` as a user runs them, with a worker running."""

from __future__ import annotations

import json
import re
import urllib.request

import transaction

import zasync

from processes import zasync_cli
from workers import WorkerProcess, client, free_port, wait_until


def cli_json(db, *args):
    return json.loads(zasync_cli("--db", db, *args, "--json").stdout)


def cli_text(db, *args):
    return zasync_cli("--db", db, *args).stdout


def cli_error(db, *args):
    done = zasync_cli("--db", db, *args, check=False)
    assert done.returncode == 1, done.stdout
    return done.stderr


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        return answer.read().decode()


def polls(port):
    found = re.search(r"^zasync_worker_poll_duration_seconds_count (\S+)$", metrics(port), re.M)
    return float(found.group(1)) if found else 0.0


def test_pause_status_metrics_and_resume(tmp_path):
    db = f"file://{tmp_path / 'Data.fs'}"
    port = free_port()
    worker = WorkerProcess(db, tmp_path / "worker.log", "--http-port", str(port))
    try:
        worker.wait_for_log("worker metrics and live view at")
        paused = cli_json(db, "queue", "pause", "--reason", "maintenance")
        assert paused["changed"] is True and paused["paused"] is True
        assert paused["pause_reason"] == "maintenance" and paused["paused_at"]
        assert "was already paused" in cli_text(db, "queue", "pause")
        status = cli_json(db, "status")["queues"][0]
        assert (status["paused"], status["pause_reason"]) == (True, "maintenance")
        assert "queue '' is paused since" in cli_text(db, "status")

        job = cli_json(db, "put", "operator.mul", "6", "7")["oid"]
        worker.wait_for_log("queue '' is paused")
        seen = polls(port)
        wait_until(lambda: polls(port) >= seen + 2, message="the worker stopped polling")
        assert cli_json(db, "job", str(job))["status"] == "pending"  # polled, not claimed
        assert 'zasync_queue_paused{queue=""} 1.0' in metrics(port)

        resumed = cli_json(db, "queue", "resume")
        assert resumed["changed"] is True and resumed["was_paused_at"] == paused["paused_at"]
        wait_until(
            lambda: cli_json(db, "job", str(job))["outcome"] == "succeeded",
            message="the job never ran after the resume",
        )
        worker.wait_for_log("queue '' resumed")
        assert 'zasync_queue_paused{queue=""} 0.0' in metrics(port)
        assert "was not paused" in cli_text(db, "queue", "resume")
    finally:
        worker.stop()


def test_bad_pause_requests_are_one_line_and_change_nothing(tmp_path):
    db = f"file://{tmp_path / 'Data.fs'}"
    with client(db) as conn:
        zasync.install_queues(conn)
        transaction.commit()
    assert "no queue named 'nope'" in cli_error(db, "queue", "pause", "nope")
    assert "no queue named 'nope'" in cli_error(db, "queue", "resume", "nope")
    refused = cli_error(db, "queue", "pause", "--reason", "x" * 201)
    assert "a pause reason is a string of at most 200 characters" in refused
    assert len(refused.strip().splitlines()) == 1
    assert cli_json(db, "status")["queues"][0]["paused"] is False
