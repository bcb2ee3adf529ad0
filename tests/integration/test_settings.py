"""Worker settings are checked before anything starts; a worker that cannot claim exits."""

from __future__ import annotations

import pytest

from processes import zasync_cli
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


def _refused(tmp_path, *args, env=None):
    """Run zasync with ``args``: it must refuse on one line with status 2, and open nothing."""
    done = zasync_cli(*args, check=False) if env is None else _run_with_env(args, env)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zasync: error: "), done.stderr
    assert not (tmp_path / "Data.fs").exists()  # nothing was opened, nor created
    return lines[0][len("zasync: error: ") :]


def _run_with_env(args, env):
    import subprocess
    import sys

    from processes import python_env

    return subprocess.run(
        [sys.executable, "-m", "zasync", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=python_env(**env),
    )


@pytest.mark.parametrize(
    "toml, message",
    [
        ('poll_interval = "fast"', "poll_interval: must be a number (got 'fast')"),
        ("poll_interval = 0", "poll_interval: must be > 0 (got 0)"),
        ('grace = "10"', "grace: must be a number (got '10')"),  # strict: no text for numbers
        ("grace = -1", "grace: must be >= 0 (got -1)"),
        ("ping_interval = inf", "ping_interval: must be a finite number (got inf)"),
        ('serve = "yes"', "serve: must be true or false (got 'yes')"),
        ('uuid = "not-a-uuid"', "uuid: must be a UUID (got 'not-a-uuid')"),
        ("http_port = 70000", "http_port: must be <= 65535 (got 70000)"),
        ("db = 3", "db: must be a string (got 3)"),
        ('colour = "red"', "colour: unknown setting; known: agent, db, death_interval"),
        ("agent = 3", "agent: must be a list (of [[tables]]) (got 3)"),
        ("[[agent]]\nthreads = 0", "agent[0].threads: must be >= 1 (got 0)"),
        ("[[agent]]\nthreads = 1001", "agent[0].threads: must be <= 1000 (got 1001)"),
        ("[[agent]]\nthreads = 2.5", "agent[0].threads: must be an integer (got 2.5)"),
        ("[[agent]]\n[[agent]]\nprefetch = -1", "agent[1].prefetch: must be >= 0 (got -1)"),
        ("[[agent]]\nprefetch = 10001", "agent[0].prefetch: must be <= 10000 (got 10001)"),
        ("[[agent]]\nname = 7", "agent[0].name: must be a string (got 7)"),
        ("[[agent]]\nsize = 3", "agent[0].size: unknown setting; known: batch, filter, name"),
        ("[[agent]]\nbatch = 0", "agent[0].batch: must be >= 1 (got 0)"),
        ('[[agent]]\nbatch = "8"', "agent[0].batch: must be an integer (got '8')"),
        ('[[agent]]\nfilter = "os.sep"', "agent[0].filter: 'os.sep' is not callable"),
        ('[[agent]]\nfilter = "no.such:thing"', "agent[0].filter: cannot import 'no.such:thing'"),
        (
            "ping_interval = 30\ndeath_interval = 34",
            "the death interval (34 s) must exceed the ping interval (30 s) plus the poll "
            "interval (5 s)",
        ),
    ],
)
def test_a_wrong_setting_in_the_file_is_named_with_the_file(tmp_path, toml, message):
    config = tmp_path / "worker.toml"
    config.write_text(toml + "\n")
    db = f"file://{tmp_path / 'Data.fs'}"
    for args in (
        ["--db", db, "--config", str(config), "worker"],
        ["--db", db, "worker", "--config", str(config)],
    ):
        assert _refused(tmp_path, *args).startswith(f"{config}: {message}")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--poll-interval", "fast"], "--poll-interval: must be a number (got 'fast')"),
        (["--poll-interval", "0"], "--poll-interval: must be > 0 (got '0')"),
        (["--grace", "-1"], "--grace: must be >= 0 (got '-1')"),
        (["--threads", "0"], "--threads: must be >= 1 (got '0')"),
        (["--threads", "many"], "--threads: must be an integer (got 'many')"),
        (["--prefetch", "10001"], "--prefetch: must be <= 10000 (got '10001')"),
        (["--batch", "0"], "--batch: must be >= 1 (got '0')"),
        (["--batch", "1001"], "--batch: must be <= 1000 (got '1001')"),
        (["--batch", "some"], "--batch: must be an integer (got 'some')"),
        (["--filter", "os.sep"], "--filter: 'os.sep' is not callable"),
        (["--uuid", "nope"], "--uuid: must be a UUID (got 'nope')"),
        (["--http-port", "65536"], "--http-port: must be <= 65535 (got '65536')"),
        (["--agent", "q/a:0+1"], "--agent 'q/a:0+1': threads: must be >= 1 (got 0)"),
        (["--agent", "q/a:x"], "--agent 'q/a:x': bad agent"),
        (
            ["--ping-interval", "1", "--death-interval", "1.5", "--poll-interval", "1"],
            "worker settings: the death interval (1.5 s) must exceed",
        ),
    ],
)
def test_a_wrong_flag_is_named(tmp_path, flags, message):
    db = f"file://{tmp_path / 'Data.fs'}"
    assert _refused(tmp_path, "--db", db, "worker", *flags).startswith(message)


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("ZASYNC_WORKER_POLL_INTERVAL", "fast", "must be a number (got 'fast')"),
        ("ZASYNC_WORKER_THREADS", "0", "must be >= 1 (got '0')"),
        ("ZASYNC_WORKER_GRACE", "-3", "must be >= 0 (got '-3')"),
        ("ZASYNC_UUID", "nope", "must be a UUID (got 'nope')"),
    ],
)
def test_a_wrong_environment_variable_is_named(tmp_path, variable, value, message):
    db = f"file://{tmp_path / 'Data.fs'}"
    refused = _refused(tmp_path, "--db", db, "worker", env={variable: value})
    assert refused == f"${variable}: {message}"


def test_environment_variables_are_text_converted_and_override_the_file(tmp_path):
    """Flags and variables are text (so '7.5' is a number there), the file is strict."""
    config = tmp_path / "worker.toml"
    config.write_text("poll_interval = 0.2\ngrace = 1\n[[agent]]\nthreads = 2\n")
    done = _run_with_env(
        [
            "--db",
            f"file://{tmp_path / 'Data.fs'}",
            "-v",
            "worker",
            "--config",
            str(config),
            "--burst",
        ],
        {"ZASYNC_WORKER_THREADS": "3", "ZASYNC_WORKER_PREFETCH": "0"},
    )
    assert done.returncode == 0, done.stderr
    assert "''/main (3 threads, 0 ahead)" in done.stderr  # the variables won over the file


def test_the_python_api_checks_its_arguments_when_called(zasync_db):
    from zasync.runtime import dispatcher as registry
    from zasync.runtime.config import AgentSpec
    from zasync.runtime.dispatcher import Dispatcher
    from zasync.runtime.worker import WorkerOptions

    for wrong in ({"threads": "3"}, {"threads": 0}, {"prefetch": -1}, {"name": 3}, {"filter": "x"}):
        with pytest.raises(ValueError):
            AgentSpec(**wrong)
    assert AgentSpec(threads=2, prefetch=1).size == 3
    with pytest.raises(ValueError, match="poll_interval"):
        Dispatcher(zasync_db, poll_interval="fast")
    with pytest.raises(ValueError, match="greater than 0"):
        Dispatcher(zasync_db, poll_interval=0)
    with pytest.raises(ValueError, match="must exceed the ping interval"):
        Dispatcher(zasync_db, poll_interval=1, ping_interval=5, death_interval=6)
    with pytest.raises(TypeError, match="AgentSpec instances"):
        Dispatcher(zasync_db, agents=[{"threads": 2}])
    assert registry._registry == {}  # a refused dispatcher is not registered
    with pytest.raises(ValueError, match="grace"):
        WorkerOptions(grace="30")
    with pytest.raises(ValueError, match="must exceed"):
        WorkerOptions(poll_interval=10, ping_interval=30, death_interval=35)


def test_a_batch_agent_claims_a_batch_per_thread_ahead_by_default(tmp_path):
    db = f"file://{tmp_path / 'Data.fs'}"
    done = _run_with_env(
        ["--db", db, "-v", "worker", "--threads", "2", "--batch", "16", "--burst"], {}
    )
    assert done.returncode == 0, done.stderr
    assert "''/main (2 threads, 32 ahead, 16 jobs per commit)" in done.stderr
    config = tmp_path / "worker.toml"
    config.write_text("[[agent]]\nthreads = 3\nbatch = 2\n")
    done = _run_with_env(["--db", db, "-v", "worker", "--config", str(config), "--burst"], {})
    assert "''/main (3 threads, 12 ahead, 2 jobs per commit)" in done.stderr, done.stderr
