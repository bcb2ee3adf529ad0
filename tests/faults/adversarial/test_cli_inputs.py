"""Bad input to every ``zasync`` command: one line on stderr, a non-zero exit, nothing changed.

Each case runs the real command line (click's CliRunner, in this process)
from an empty working directory, next to a ready database (queues, a quota
``reports``, one pending job), a database no worker has initialised, a
directory, a text file and an empty file.  Every file under the test's
folder is compared, byte for byte, before and after: a refused command
changes nothing and creates nothing (not even ``./var/zasync``).
"""

from __future__ import annotations

import hashlib
import os
import pty
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import transaction
import ZODB
from click.testing import CliRunner
from ZODB.FileStorage import FileStorage

import zasync
from zasync.cli import main

from processes import python_env

MISSING = "a worker creates it when it first starts"
UNINITIALISED = "no worker has initialised"

# (arguments, exit status, a fragment of the one line).  {ready}, {bare}, {dir}, {text},
# {empty}, {missing} and {tmp} name the places the `places` fixture makes.
CASES: list[tuple[str, int, str]] = [
    # -- --db values that are not a database ----------------------------------------
    ("--db {dir} status", 1, "is a directory, not a database file"),
    ("--db {text} status", 1, "is not a database file"),
    ("--db {empty} status", 1, "is an empty file, not a database yet"),
    ("--db /dev/null status", 1, "/dev/null is not a regular file"),
    ("--db file://{tmp}/no/such/dir/Data.fs status", 1, MISSING),
    ("--db garbage://x status", 1, "No resolver found for uri: garbage://x"),
    ("--db zeo://127.0.0.1:99999 status", 1, "Port out of range"),
    ("--db file:// status", 1, "names no file"),
    ("--db {dir} worker --burst", 1, "is a directory"),
    ("--db {text} worker --burst", 1, "is not a database file"),
    ("--db /dev/null worker --burst", 1, "not a regular file"),
    # -- no database there: no command but `worker` creates one -----------------------
    *(
        (f"--db {{missing}} {command}", 1, MISSING)
        for command in (
            "status",
            "jobs",
            "count",
            "job 1",
            "traceback 1",
            "jobstats",
            "lastcompleted",
            "nextpending",
            "dispatchers",
            "uuids",
            "retry 1",
            "remove 1",
            "cancel 1",
            "quota resize reports 1",
            "agent resize abc main --size 1",
            "purge --older-than 1d --yes",
            "put operator.mul 6 7",
            "web --port 0",
        )
    ),
    ("status", 1, "no database at var/zasync/Data.fs"),  # the default, from another folder
    ("put operator.mul 6 7", 1, "no database at var/zasync/Data.fs"),
    # -- a database no worker has initialised ------------------------------------------
    ("--db {bare} status", 1, UNINITIALISED),
    ("--db {bare} put operator.mul 6 7", 1, UNINITIALISED),
    ("--db {bare} jobs", 1, UNINITIALISED),
    ("--db {bare} purge --older-than 1d --yes", 1, UNINITIALISED),
    # -- put --------------------------------------------------------------------------
    ("--db {ready} put operator.mul --begin-after 99999999d", 1, "duration too long"),
    ("--db {ready} put operator.mul --begin-after nan", 1, "not a duration: 'nan'"),
    ("--db {ready} put operator.mul --begin-after 9999-12-31T23:59+00:00", 1, "100 years"),
    ("--db {ready} put operator.mul --begin-after 2026-01-01T10:00", 1, "has no time zone"),
    ("--db {ready} put operator.mul --begin-by 1e400", 1, "duration too long"),
    ("--db {ready} put operator.mul --begin-by -5", 1, "durations are >= 0"),
    ("--db {ready} put operator.mul --begin-by soon", 1, "not a duration: 'soon'"),
    ("--db {ready} put operator.mul --quota nope", 1, "known quotas: 'reports'"),
    ("--db {ready} put operator.mul --timeout -1 --wait", 2, "Invalid value for '--timeout'"),
    ("--db {ready} put operator.mul --timeout nan --wait", 2, "not a number of seconds"),
    ("--db {ready} put operator.mul --failure-log-level 999", 1, "unknown log level '999'"),
    ("--db {ready} put operator.mul --failure-log-level LOUD", 1, "unknown log level 'LOUD'"),
    ("--db {ready} put no.such.function", 1, "cannot import 'no.such.function'"),
    ("--db {ready} put operator.nope", 1, "cannot import 'operator.nope'"),
    ("--db {ready} put os.sep", 1, "'/' is not callable"),
    ("--db {ready} put operator.mul --queue nope", 1, "no queue named 'nope'"),
    ("--db {ready} put operator.mul --kw novalue", 1, "bad --kw 'novalue'"),
    ("--db {ready} put operator.mul --retry-policy no.such.factory", 1, "cannot import"),
    (
        "--db {ready} put operator.mul --retry-policy nosuch",
        1,
        "no retry policy registered as 'nosuch'",
    ),
    ("--db {ready} put", 2, "Missing argument 'DOTTED.NAME'"),
    # -- read commands ----------------------------------------------------------------
    ("--db {ready} jobs --state done", 2, "unknown state 'done'"),
    ("--db {ready} jobs --since 99999999d", 2, "duration too long"),
    ("--db {ready} jobs --since yesterday", 2, "not a duration"),
    ("--db {ready} count --before -1s", 2, "not a duration: '-1s'"),
    ("--db {ready} jobs --limit -1", 2, "Invalid value for '--limit'"),
    ("--db {ready} jobs --queue nope", 1, "no queue named 'nope'"),
    ("--db {ready} job abc", 1, "not a job id: 'abc'"),
    ("--db {ready} job 99999999999999999999999", 1, "out of range"),
    ("--db {ready} job 999999", 1, "no job with id 999999"),
    ("--db {ready} traceback 999999", 1, "no job with id 999999"),
    ("--db {ready} lastcompleted --state bogus", 2, "unknown state 'bogus'"),
    ("--db {ready} dispatchers --queue nope", 1, "no queue named 'nope'"),
    # -- act commands -----------------------------------------------------------------
    ("--db {ready} retry 999999", 1, "no job with id 999999"),
    ("--db {ready} remove 999999", 1, "no job with id 999999"),
    ("--db {ready} remove abc", 1, "not a job id"),
    ("--db {ready} cancel 999999", 1, "no job with id 999999"),
    (
        "--db {ready} quota resize nope 3",
        1,
        "no quota named 'nope' in queue ''; known quotas: 'reports'",
    ),
    ("--db {ready} quota resize reports -1", 2, "No such option '-1'"),
    ("--db {ready} quota resize reports x", 2, "Invalid value for 'SIZE'"),
    ("--db {ready} agent resize ffff main --size 3", 1, "no dispatcher 'ffff'"),
    (
        "--db {ready} agent resize ffff main --threads 0",
        1,
        "threads must be an integer from 1 to 1000",
    ),
    ("--db {ready} agent resize ffff main", 1, "give a size, threads, or both"),
    ("--db {ready} purge --older-than soon --yes", 2, "bad --older-than"),
    ("--db {ready} purge --older-than 99999999d --yes", 2, "duration too long"),
    ("--db {ready} purge --older-than -1s --yes", 2, "not a duration: '-1s'"),
    ("--db {ready} purge --older-than -1 --yes", 2, "durations are >= 0"),
    ("--db {ready} purge --older-than nan --yes", 2, "not a duration: 'nan'"),
    ("--db {ready} purge --queue nope --older-than 1d --yes", 1, "no queue named 'nope'"),
    ("--db {ready} purge", 2, "Missing option '--older-than'"),
    # -- worker options (zasync.runtime.settings refuses them before the database opens; --burst:
    # a value wrongly accepted ends the test instead of running a worker until the timeout)
    ("--db {ready} worker --threads 0 --burst", 2, "--threads: must be >= 1 (got '0')"),
    ("--db {ready} worker --threads 1001 --burst", 2, "--threads: must be <= 1000"),
    ("--db {ready} worker --prefetch -1 --burst", 2, "--prefetch: must be >= 0"),
    ("--db {ready} worker --poll-interval 0 --burst", 2, "--poll-interval: must be > 0"),
    (
        "--db {ready} worker --poll-interval inf --burst",
        2,
        "--poll-interval: must be a finite number",
    ),
    ("--db {ready} worker --grace nan --burst", 2, "--grace: must be a finite number"),
    ("--db {ready} worker --ping-interval abc --burst", 2, "--ping-interval: must be a number"),
    ("--db {ready} worker --death-interval -1 --burst", 2, "--death-interval: must be > 0"),
    ("--db {ready} worker --http-port 70000 --burst", 2, "--http-port: must be <= 65535"),
    ("--db {ready} worker --uuid xyz --burst", 2, "--uuid: must be a UUID (got 'xyz')"),
    ("--db {ready} worker --filter no.such --burst", 2, "--filter: cannot import 'no.such'"),
    ("--db {ready} worker --agent q/a:x --burst", 2, "bad agent; use queue/name:threads+prefetch"),
    ("--db {ready} worker --agent q/a:99999999+0 --burst", 2, "threads: must be <= 1000"),
    ("--db {ready} worker --config {tmp}/missing.toml --burst", 2, "does not exist"),
    # -- web and live -----------------------------------------------------------------
    ("--db {ready} web --port 70000", 2, "Invalid value for '--port'"),
    (
        "--db {ready} web --host nonexistent.invalid --port 8089",
        1,
        "cannot listen on nonexistent.invalid:8089",
    ),
    ("live status --url garbage", 2, "is not an http:// URL"),
    ("live status --url http://127.0.0.1:1", 1, "no worker answers at http://127.0.0.1:1"),
    ("live job", 2, "live job needs a JOB_ID"),
    ("live bogus", 2, "'bogus' is not one of 'status', 'jobs'"),
    # -- zasync's own options ---------------------------------------------------------
    ("--connect-timeout 0 status", 2, "Invalid value for '--connect-timeout'"),
    ("--connect-timeout nan status", 2, "not a number of seconds"),
    ("--config {tmp}/missing.toml status", 2, "does not exist"),
    ("--config {badtoml} status", 2, "bad.toml: colour: unknown setting"),
    *(
        (command.format(path=f"{{tmp}}/{name}.toml"), code, message)
        for name, message in (
            ("db-number", "db-number.toml: db: must be a string (got 5)"),
            ("poll-text", "poll-text.toml: poll_interval: must be a number (got 'often')"),
            ("grace-nan", "grace-nan.toml: grace: must be a finite number (got nan)"),
            ("serve-text", "serve-text.toml: serve: must be true or false (got 'yes')"),
            ("agent-number", "agent-number.toml: agent: must be a list"),
            ("uuid-bad", "uuid-bad.toml: uuid: must be a UUID (got 'xyz')"),
            ("not-toml", "not-toml.toml: cannot read it"),
        )
        # zasync's --config (every command), and the worker's own.
        for command, code in (("--config {path} status", 2), ("worker --config {path} --burst", 2))
    ),
    ("nosuchcommand", 2, "No such command 'nosuchcommand'"),
    ("--db {ready} --bogus status", 2, "No such option '--bogus'"),
]


# Config files (zasync --config, worker --config) with a bad value each.
CONFIGS = {
    "db-number": "db = 5\n",
    "poll-text": 'poll_interval = "often"\n',
    "grace-nan": "grace = nan\n",
    "serve-text": 'serve = "yes"\n',
    "agent-number": "agent = 5\n",
    "uuid-bad": 'uuid = "xyz"\n',
    "not-toml": "not toml [[[\n",
}


def make_database(path: Path, queues: bool) -> None:
    db = ZODB.DB(FileStorage(str(path)))
    if queues:
        conn = db.open()
        queue = zasync.install_queues(conn)[""]
        queue.quotas.create("reports", size=1)
        queue.put(zasync.Job(pow, 2, 10))
        transaction.commit()
        conn.close()
    db.close()


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    make_database(tmp_path / "ready.fs", queues=True)
    make_database(tmp_path / "bare.fs", queues=False)
    (tmp_path / "adir").mkdir()
    (tmp_path / "text.fs").write_text("hello\n")
    (tmp_path / "empty.fs").write_bytes(b"")
    (tmp_path / "bad.toml").write_text('colour = "red"\n')
    for name, text in CONFIGS.items():
        (tmp_path / f"{name}.toml").write_text(text)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    for name in ("ZASYNC_DB", "ZASYNC_CONFIG", "ZASYNC_WORKER_URL", "ZASYNC_WEB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return {
        "tmp": str(tmp_path),
        "ready": f"file://{tmp_path / 'ready.fs'}",
        "bare": str(tmp_path / "bare.fs"),
        "dir": str(tmp_path / "adir"),
        "text": str(tmp_path / "text.fs"),
        "empty": str(tmp_path / "empty.fs"),
        "missing": f"file://{tmp_path / 'missing.fs'}",
        "badtoml": str(tmp_path / "bad.toml"),
    }


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``, with a hash of each file's bytes.

    FileStorage's scratch file (``.tmp``) and lock file (``.lock``, the pid of
    the last process to open it) count by their presence only.
    """
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_dir():
            found[key] = "dir"
        elif path.suffix in (".tmp", ".lock"):
            found[key] = "present"
        else:
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def assert_one_line_error(stderr: str, code: int, expected_code: int, fragment: str) -> str:
    lines = stderr.splitlines()
    assert code == expected_code, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("zasync: error: "), stderr
    assert fragment in lines[0], stderr
    return lines[0]


@pytest.mark.parametrize("args, code, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(
    places: dict[str, str], tmp_path: Path, args: str, code: int, fragment: str
) -> None:
    argv = [word.format(**places) for word in args.split()]
    fragment = fragment.format(**places)
    before = snapshot(tmp_path)
    result = CliRunner().invoke(main, argv, catch_exceptions=False)
    assert_one_line_error(result.stderr, result.exit_code, code, fragment)
    assert result.stdout == ""
    assert snapshot(tmp_path) == before


def test_the_table_tries_over_a_hundred_bad_inputs() -> None:
    assert len(CASES) >= 100


def test_an_unexpected_error_is_one_line_that_suggests_verbose(
    places: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from zasync.ops import queries

    def broken(conn: Any) -> list[str]:
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(queries, "uuids", broken)
    result = CliRunner().invoke(main, ["--db", places["ready"], "uuids"], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr == (
        "zasync: error: unexpected RuntimeError: a bug over two lines "
        "(run with -v for the traceback)\n"
    )


def test_a_refusal_raised_by_queue_put_is_one_line(
    places: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What queue.put refuses (ValueError, TypeError, ZasyncError) goes through the same path."""
    from zasync.model.queue import Queue

    def refuse(self: Any, *args: Any, **kwargs: Any) -> None:
        raise zasync.ZasyncError("callables defined in __main__ cannot be\nimported by workers")

    monkeypatch.setattr(Queue, "put", refuse)
    result = CliRunner().invoke(
        main, ["--db", places["ready"], "put", "operator.mul"], catch_exceptions=False
    )
    assert result.exit_code == 1
    assert result.stderr == (
        "zasync: error: callables defined in __main__ cannot be imported by workers\n"
    )


# -- as a user runs it: a real process ----------------------------------------------------


def run_zasync(
    *args: str, cwd: Path | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zasync", *args],
        stdout=kwargs.pop("stdout", subprocess.PIPE),
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,  # a bound on a hang, not on speed
        env=python_env(),
        cwd=cwd,
        **kwargs,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_verbose_adds_the_traceback(places: dict[str, str]) -> None:
    done = run_zasync("-v", "--db", places["dir"], "status")
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.splitlines()[-1].endswith("is a directory, not a database file")
    quiet = run_zasync("--db", places["dir"], "status")
    assert_one_line_error(quiet.stderr, quiet.returncode, 1, "is a directory")


def test_an_unreachable_zeo_server_fails_within_the_connect_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    done = run_zasync("--db", f"zeo://127.0.0.1:{closed_port()}", "status", cwd=tmp_path)
    line = assert_one_line_error(done.stderr, done.returncode, 1, "no ZEO server answered")
    assert line.startswith("zasync: error: cannot open 'zeo://127.0.0.1:")
    # ZEO would wait 30 s by default; the command gives up after --connect-timeout (10 s).
    assert time.monotonic() - started < 30
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["jobs", "worker"])
def test_an_unreachable_postgresql_server_is_one_line_without_the_password(
    tmp_path: Path, command: str
) -> None:
    pytest.importorskip("relstorage")
    uri = f"postgresql://someone:s3cret@127.0.0.1:{closed_port()}/zasync"
    done = run_zasync("--db", uri, command, cwd=tmp_path)
    line = assert_one_line_error(done.stderr, done.returncode, 1, "Connection refused")
    assert "someone:***@127.0.0.1" in line and "s3cret" not in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["worker", "--burst", "--http-port"], ["web", "--port"]])
def test_a_port_in_use_is_named_and_nothing_is_created(tmp_path: Path, command: list[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        db = tmp_path / "new" / "Data.fs"
        done = run_zasync("--db", f"file://{db}", *command, str(port))
    option = command[-1]
    assert_one_line_error(
        done.stderr,
        done.returncode,
        1,
        f"cannot listen on 127.0.0.1:{port} ({option}): Address already in use",
    )
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_database_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "Data.fs"
    make_database(db, queues=True)
    before = snapshot(tmp_path)
    if os.geteuid() == 0:  # root writes through permissions, not through the immutable flag
        if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not supported here")
    else:
        db.chmod(0o444)
    try:
        done = run_zasync("--db", str(db), "jobs", cwd=tmp_path)
        assert_one_line_error(done.stderr, done.returncode, 1, f"{db} is read-only")
        assert snapshot(tmp_path) == before
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(db)], check=True)


# -- purge asks first ---------------------------------------------------------------------


@pytest.fixture
def finished(tmp_path: Path) -> str:
    """A database with three finished jobs (a burst worker ran them)."""
    db = tmp_path / "Data.fs"
    make_database(db, queues=True)
    database = ZODB.DB(FileStorage(str(db)))
    with database.transaction() as conn:
        queue = zasync.get_queue(conn)
        queue.put(zasync.Job(pow, 3, 2))
        queue.put(zasync.Job(pow, 4, 2))
    database.close()
    uri = f"file://{db}"
    ran = run_zasync("--db", uri, "-q", "worker", "--burst", "--poll-interval", "0.1")
    assert ran.returncode == 0, ran.stderr
    return uri


def completed(uri: str) -> int:
    done = run_zasync("--db", uri, "count", "--state", "completed")
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def purge_on_a_terminal(uri: str, answer: str) -> subprocess.CompletedProcess[str]:
    """``zasync purge`` with a terminal on stdin, answering ``answer`` to its question."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer.encode() + b"\n")
        return run_zasync("--db", uri, "purge", "--older-than", "0s", stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)


def test_purge_says_what_it_will_delete_and_asks(finished: str) -> None:
    assert completed(finished) == 3
    refused = run_zasync("--db", finished, "purge", "--older-than", "0s", stdin=subprocess.DEVNULL)
    assert_one_line_error(
        refused.stderr,
        refused.returncode,
        1,
        "will delete 3 finished jobs older than 0s from every queue; refusing without --yes",
    )
    assert completed(finished) == 3
    declined = purge_on_a_terminal(finished, "n")
    assert declined.returncode == 1
    assert "will delete 3 finished jobs older than 0s from every queue. Go on?" in declined.stderr
    assert declined.stderr.endswith("[y/N]: zasync: error: aborted\n")  # no echo: not a tty
    assert completed(finished) == 3
    accepted = purge_on_a_terminal(finished, "y")
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.strip() == "purged 3 finished jobs older than 0s from every queue"
    assert completed(finished) == 0


def test_purge_with_yes_does_not_ask(finished: str) -> None:
    done = run_zasync(
        "--db", finished, "purge", "--older-than", "0s", "--yes", stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stderr
    assert completed(finished) == 0


def test_output_into_a_closed_pipe_is_not_an_error_message(places: dict[str, str]) -> None:
    """`zasync jobs | head -1`: the reader went away; no 'Broken pipe' error line."""
    reader, writer = os.pipe()
    os.close(reader)  # every write now fails with EPIPE
    try:
        done = run_zasync("--db", places["ready"], "jobs", "--json", stdout=writer)
    finally:
        os.close(writer)
    assert done.returncode == 1
    assert done.stderr == ""
