"""The zasync command line against a real embedded database, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import zasync
from zasync.ops.durations import parse_duration, parse_time
from zasync.runtime.settings import agent_from_config, load_config, parse_agent_option

from processes import python_env, zasync_cli


@pytest.fixture
def db(tmp_path):
    return f"file://{tmp_path / 'Data.fs'}"


def test_put_then_burst_worker_then_status(db):
    assert zasync_cli("--db", db, "worker", "--burst", "--poll-interval", "0.2").returncode == 0
    out = zasync_cli("--db", db, "put", "operator.mul", "6", "7", "--json").stdout
    put = json.loads(out)
    assert put["status"] == "pending" and put["queue"] == ""
    zasync_cli("--db", db, "put", "support.multiply", "2", "3", "--kw", "third=7")
    zasync_cli("--db", db, "put", "operator.truediv", "1", "0")
    zasync_cli("--db", db, "put", "operator.add", "1", "1", "--begin-after", "1h")
    status = json.loads(zasync_cli("--db", db, "status", "--json").stdout)
    assert status["queues"][0]["pending"] == 4
    worker = zasync_cli("--db", db, "-v", "worker", "--burst", "--poll-interval", "0.2")
    assert "burst mode: no job is due; stopping" in worker.stderr
    status = json.loads(zasync_cli("--db", db, "status", "--json").stdout)
    queue = status["queues"][0]
    assert queue["pending"] == 1  # the job scheduled in an hour
    agents = [a for d in queue["dispatchers"] for a in d["agents"]]
    assert sum(a["completed"] for a in agents) == 3
    assert all(d["activated"] is None for d in queue["dispatchers"])
    table = zasync_cli("--db", db, "status").stdout
    assert "main" in table and "pending" in table


def test_put_wait_reports_results_and_failures(db, tmp_path):
    from workers import WorkerProcess

    worker = WorkerProcess(db, tmp_path / "worker.log")
    try:
        worker.wait_for_log("worker ")
        done = zasync_cli("--db", db, "put", "support.report_progress", "3", "--wait")
        assert done.stdout.strip().splitlines()[-1] == "3"
        failed = zasync_cli("--db", db, "put", "operator.truediv", "1", "0", "--wait", check=False)
        assert failed.returncode == 1 and "ZeroDivisionError" in failed.stderr
        as_json = zasync_cli(
            "--db", db, "put", "operator.truediv", "1", "0", "--wait", "--json", check=False
        )
        outcome = json.loads(as_json.stdout)
        assert outcome["failed"] is True and outcome["status"] == "completed"
        assert "ZeroDivisionError" in outcome["traceback"]
    finally:
        worker.stop()


@pytest.mark.parametrize(
    "args, message",
    [
        (["put", "no.such.function"], "cannot import 'no.such.function'"),
        (["put", "operator.mul", "1", "--queue", "missing"], "no queue named 'missing'"),
        (["put", "operator.mul", "--kw", "novalue"], "bad --kw 'novalue'"),
        (["put", "operator.mul", "--begin-by", "soon"], "not a duration"),
        (["put", "operator.mul", "--begin-after", "2026-01-01T10:00"], "has no time zone"),
        (["put", "operator.mul", "--quota", "nope"], "no quota named 'nope' in queue ''"),
        (["put", "operator.mul", "--failure-log-level", "LOUD"], "unknown log level"),
        (["worker", "--agent", "q/a:x"], "bad agent"),
    ],
)
def test_errors_are_clear_and_change_nothing(db, args, message):
    zasync_cli("--db", db, "worker", "--burst", "--poll-interval", "0.2")  # installs the queue
    done = zasync_cli("--db", db, *args, check=False)
    assert done.returncode != 0
    assert message in done.stderr
    status = json.loads(zasync_cli("--db", db, "status", "--json").stdout)
    assert status["queues"][0]["pending"] == 0


def test_status_of_a_missing_database_says_what_to_do_and_creates_nothing(db, tmp_path):
    done = zasync_cli("--db", db, "status", check=False)
    assert done.returncode == 1 and "a worker creates it when it first starts" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_help_everywhere():
    for command in ([], ["worker"], ["put"], ["status"]):
        assert "Usage:" in zasync_cli(*command, "--help").stdout


def test_durations_and_times(now):
    assert parse_duration("90s").total_seconds() == 90
    assert parse_duration("1h30m").total_seconds() == 5400
    assert parse_duration("2d").days == 2
    assert parse_duration("1.5").total_seconds() == 1.5
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("1x")
    assert parse_duration("36525d").days == 36525  # 100 years: the longest
    for too_long in ("36526d", "99999999d", "1e400", "inf"):
        with pytest.raises(ValueError, match="duration too long"):
            parse_duration(too_long)
    for negative_or_nan in ("-5", "nan", "-0.1"):
        with pytest.raises(ValueError, match="durations are >= 0"):
            parse_duration(negative_or_nan)
    with pytest.raises(ValueError, match="duration too long"):
        parse_time("99999999d")  # no OverflowError from the date it is added to
    with pytest.raises(ValueError, match="100 years"):
        parse_time("9999-12-31T23:59:59+00:00")  # begin_after + begin_by would overflow
    assert parse_time("10m") == now + parse_duration("10m")
    assert parse_time("2026-01-01T10:00+01:00").hour == 9
    with pytest.raises(ValueError, match="no time zone"):
        parse_time("2026-01-01T10:00")


def test_worker_config_file(tmp_path):
    path = tmp_path / "worker.toml"
    path.write_text(
        'db = "memory://"\npoll_interval = 0.5\n'
        '[[agent]]\nname = "reports"\nqueue = "reports"\nthreads = 2\nprefetch = 0\n'
        'filter = "support:only_or"\n'
    )
    options = load_config(path)
    (agent,) = options["agents"]
    assert (agent.name, agent.queue, agent.threads, agent.prefetch) == ("reports", "reports", 2, 0)
    import support

    assert agent.filter is support.only_or
    path.write_text("colour = 'red'\n")
    with pytest.raises(zasync.ZasyncError, match="colour: unknown setting"):
        load_config(path)
    with pytest.raises(zasync.ZasyncError, match="threads: must be >= 1"):
        agent_from_config({"threads": 0})
    with pytest.raises(zasync.ZasyncError, match="size: unknown setting"):
        agent_from_config({"size": 3})
    assert parse_agent_option("reports/main:2+5") == {
        "queue": "reports",
        "name": "main",
        "threads": 2,
        "prefetch": 5,
    }


def test_a_config_file_names_the_database_for_every_command(tmp_path):
    data = tmp_path / "Data.fs"
    config = tmp_path / "zasync.toml"
    config.write_text(f'db = "file://{data}"\npoll_interval = 0.2\n')
    zasync_cli("--config", str(config), "worker", "--burst")  # its settings and db from the file
    zasync_cli("--config", str(config), "put", "operator.mul", "6", "7")
    done = subprocess.run(  # the same through the environment
        [sys.executable, "-m", "zasync", "status", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=python_env(ZASYNC_CONFIG=str(config)),
        check=True,
    )
    assert json.loads(done.stdout)["queues"][0]["pending"] == 1
    # --db wins over the file.
    other = f"file://{tmp_path / 'Other.fs'}"
    zasync_cli("--db", other, "--config", str(config), "worker", "--burst")
    status = json.loads(zasync_cli("--db", other, "status", "--json").stdout)
    assert status["queues"][0]["pending"] == 0
    assert data.exists()


def test_a_bad_config_file_is_refused_before_anything_opens(tmp_path):
    config = tmp_path / "zasync.toml"
    config.write_text('db = "file://%s"\ncolour = "red"\n' % (tmp_path / "Data.fs"))
    done = zasync_cli("--config", str(config), "put", "operator.mul", "6", "7", check=False)
    assert done.returncode == 2 and "zasync.toml: colour: unknown setting" in done.stderr
    assert not (tmp_path / "Data.fs").exists()  # nothing was opened, nothing put
