"""The operations commands, run as a user runs them, against a worker running real jobs."""

from __future__ import annotations

import json

import pytest
import transaction

import zasync

from processes import zasync_cli
from workers import WorkerProcess, client, free_port, wait_until


def cli_json(db, *args):
    return json.loads(zasync_cli("--db", db, *args, "--json").stdout)


def cli_error(db, *args):
    done = zasync_cli("--db", db, *args, check=False)
    assert done.returncode != 0, done.stdout
    return done.stderr


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    """A worker (with its HTTP port) and jobs succeeded, failed, running, pending."""
    tmp = tmp_path_factory.mktemp("ops")
    db = f"file://{tmp / 'Data.fs'}"
    port = free_port()
    worker = WorkerProcess(db, tmp / "worker.log", "--http-port", str(port), "--threads", "2")
    try:
        worker.wait_for_log("worker metrics and live view at")
        with client(db) as conn:
            zasync.get_queue(conn).quotas.create("reports", size=1)
            transaction.commit()
        ids = {}
        ids["ok"] = cli_json(db, "put", "operator.mul", "6", "7", "--wait")["oid"]
        ids["bad"] = json.loads(
            zasync_cli(
                "--db", db, "put", "operator.truediv", "1", "0", "--wait", "--json", check=False
            ).stdout
        )["oid"]
        ids["running"] = cli_json(db, "put", "support.until_cancelled", "x")["oid"]
        ids["later"] = cli_json(
            db, "put", "operator.add", "1", "2", "--begin-after", "1h", "--quota", "reports"
        )["oid"]
        ids["doomed"] = cli_json(db, "put", "operator.add", "2", "2", "--begin-after", "2h")["oid"]
        wait_until(
            lambda: cli_json(db, "count", "--state", "active")["count"] == 1,
            message="the running job never started",
        )
        yield db, ids, port, worker
    finally:
        worker.stop()


def test_jobs_lists_every_state_with_filters(system):
    db, ids, _, _ = system
    everything = cli_json(db, "jobs")
    assert {j["id"] for j in everything} == set(ids.values())
    first = everything[0]
    assert set(first) >= {"id", "status", "outcome", "callable", "queue", "agent", "duration"}
    assert [j["id"] for j in cli_json(db, "jobs", "--state", "failed")] == [ids["bad"]]
    pending = {j["id"] for j in cli_json(db, "jobs", "--state", "pending")}
    assert pending == {ids["later"], ids["doomed"]}
    assert [j["id"] for j in cli_json(db, "jobs", "--callable", "*.truediv")] == [ids["bad"]]
    assert cli_json(db, "jobs", "--state", "succeeded", "--before", "1d") == []
    assert len(cli_json(db, "jobs", "--limit", "2")) == 2
    table = zasync_cli("--db", db, "jobs").stdout
    assert "support.until_cancelled" in table and "failed" in table


@pytest.mark.parametrize(
    "args, message",
    [
        (["jobs", "--state", "done"], "unknown state 'done'"),
        (["count", "--since", "yesterday"], "bad since: not a duration"),
        (["jobs", "--queue", "nope"], "no queue named 'nope'"),
        (["job", "999999"], "no job with id 999999"),
        (["job", "abc"], "not a job id: 'abc'"),
        (["traceback", "999999"], "no job with id 999999"),
        (["retry", "999999"], "no job with id 999999"),
        (["remove", "999999"], "no job with id 999999"),
        (["cancel", "999999"], "no job with id 999999"),
        (["quota", "resize", "nope", "3"], "no quota named 'nope'"),
        (["agent", "resize", "ffffffff", "main", "--size", "3"], "no dispatcher 'ffffffff'"),
        (["purge", "--older-than", "soon"], "bad --older-than"),
    ],
)
def test_errors_are_one_clear_line(system, args, message):
    db = system[0]
    assert message in cli_error(db, *args)


def test_job_traceback_count_stats(system):
    db, ids, _, _ = system
    ok = cli_json(db, "job", str(ids["ok"]))
    assert ok["result"] == 42 and ok["outcome"] == "succeeded" and ok["agent"] == "main"
    bad = cli_json(db, "job", hex(ids["bad"]))
    assert bad["outcome"] == "failed" and "ZeroDivisionError" in bad["traceback"]
    text = zasync_cli("--db", db, "job", str(ids["bad"])).stdout
    assert "ZeroDivisionError" in text and "history:" in text
    assert "ZeroDivisionError" in zasync_cli("--db", db, "traceback", str(ids["bad"])).stdout
    assert "has no traceback" in cli_error(db, "traceback", str(ids["ok"]))
    assert cli_json(db, "count", "--state", "pending") == {"count": 2}
    assert zasync_cli("--db", db, "count").stdout.strip() == "5"
    stats = cli_json(db, "jobstats")
    assert stats["counts"]["failed"] == 1 and stats["counts"]["active"] == 1
    assert stats["durations"]["failed"]["longest"]["id"] == ids["bad"]
    assert cli_json(db, "lastcompleted", "--state", "failed")["id"] == ids["bad"]
    assert cli_json(db, "nextpending")["id"] == ids["later"]


def test_dispatchers_uuids_and_live_view(system):
    db, ids, port, _ = system
    (entry,) = cli_json(db, "dispatchers")
    assert entry["state"] == "alive" and entry["last_ping"]
    (agent,) = entry["agents"]
    assert [j["id"] for j in agent["jobs"]] == [ids["running"]]
    assert cli_json(db, "uuids") == [entry["uuid"]]
    url = f"http://127.0.0.1:{port}"
    status = cli_json(db, "live", "status", "--url", url)
    assert status["status"] == "RUNNING" and status["uuid"] == entry["uuid"]
    assert status["pools"][0]["running"] == 1
    running = cli_json(db, "live", "jobs", "--url", url)
    assert [j["id"] for j in running] == [ids["running"]]
    assert running[0]["started"] and running[0]["thread"]
    assert len(cli_json(db, "live", "polls", "--url", url, "--count", "2")) == 2
    record = cli_json(db, "live", "job", str(ids["ok"]), "--url", url)
    assert record["result"] == "42" and record["failed"] is False
    assert "no record of job 999999" in cli_error(db, "live", "job", "999999", "--url", url)
    free = free_port()
    assert "no worker answers" in cli_error(
        db, "live", "status", "--url", f"http://127.0.0.1:{free}"
    )


def test_acting_retry_remove_resize(system):
    db, ids, _, _ = system
    retried = cli_json(db, "retry", str(ids["bad"]))
    assert retried["retried"] == ids["bad"]
    wait_until(
        lambda: cli_json(db, "job", str(retried["id"]))["outcome"] == "failed",
        message="the retried job never ran",
    )
    assert "only failed jobs are retried" in cli_error(db, "retry", str(ids["ok"]))
    assert "only pending jobs can be removed" in cli_error(db, "remove", str(ids["ok"]))
    assert cli_json(db, "quota", "resize", "reports", "3") == {
        "queue": "",
        "quota": "reports",
        "old_size": 1,
        "size": 3,
    }
    uuid = cli_json(db, "uuids")[0]
    resized = cli_json(db, "agent", "resize", uuid[:8], "--threads", "3", "--size", "9")
    assert (resized["size"], resized["threads"]) == (9, 3)
    # The dashboard refuses the same values with the same words (tests/integration/test_web.py).
    refused = cli_error(db, "agent", "resize", uuid[:8], "--threads", "0")
    assert "agent threads must be an integer from 1 to 1000, not 0" in refused
    assert "agent size must be an integer >= 0, not -1" in cli_error(
        db, "agent", "resize", uuid[:8], "--size", "-1"
    )
    (entry,) = cli_json(db, "dispatchers")
    assert entry["agents"][0]["size"] == 9


def test_cancel_pending_and_running_then_remove_and_purge(system):
    db, ids, _, _ = system
    assert cli_json(db, "cancel", str(ids["doomed"]))["outcome"] == "cancelled"
    assert cli_json(db, "job", str(ids["doomed"]))["outcome"] == "cancelled"
    assert "cannot cancel" in cli_error(db, "cancel", str(ids["doomed"]))
    out = zasync_cli("--db", db, "cancel", str(ids["running"]), "--reason", "enough").stdout
    assert "asked it to stop" in out
    wait_until(
        lambda: cli_json(db, "job", str(ids["running"]))["outcome"] == "cancelled",
        message="the running job never stopped",
    )
    running = cli_json(db, "job", str(ids["running"]))
    assert running["cancel_request"]["reason"] == "enough"
    assert "CancelledError" in running["traceback"]
    assert cli_json(db, "remove", str(ids["later"])) == {"removed": ids["later"], "queue": ""}
    assert cli_json(db, "count", "--state", "pending") == {"count": 0}
    kept = cli_json(db, "purge", "--older-than", "1d")  # nothing to purge: no question
    assert kept["purged"] == {"": 0}
    before = cli_json(db, "count", "--state", "completed")["count"]
    refused = cli_error(db, "purge", "--older-than", "0s")  # no terminal, no --yes
    assert f"will delete {before} finished jobs older than 0s from every queue" in refused
    assert "refusing without --yes" in refused
    assert cli_json(db, "count", "--state", "completed") == {"count": before}
    assert cli_json(db, "purge", "--older-than", "0s", "--yes")["purged"] == {"": before}
    assert cli_json(db, "count", "--state", "completed") == {"count": 0}
