"""Declared retries and dead letters from the command line, with a real worker."""

from __future__ import annotations

import json

from processes import file_database, zasync_cli
from workers import WorkerProcess, wait_until


def cli_json(db, *args):
    return json.loads(zasync_cli("--db", db, *args, "--json").stdout)


def cli_failure(db, *args, code=1):
    done = zasync_cli("--db", db, *args, check=False)
    assert done.returncode == code, done.stdout + done.stderr
    return done.stderr.strip()


def test_put_with_retry_then_list_and_retry_the_dead_letters(tmp_path):
    db = f"file://{tmp_path / 'Data.fs'}"
    worker = WorkerProcess(db, tmp_path / "worker.log")
    try:
        worker.wait_for_log("serving ")
        put = cli_json(
            db, "put", "operator.truediv", "1", "0",
            "--retry", "3", "--retry-on", "ZeroDivisionError", "--backoff", "0.05",
        )  # fmt: skip
        job = str(put["oid"])
        wait_until(lambda: cli_json(db, "job", job)["status"] == "completed")
        shown = cli_json(db, "job", job)
        assert [a["outcome"] for a in shown["attempts"]] == ["retried", "retried", "failed"]
        assert shown["dead_letter"] is True
        text = zasync_cli("--db", db, "job", job).stdout
        assert text.count("attempt:") == 3 and "dead letter:" in text

        dead = cli_json(db, "jobs", "--state", "dead")
        assert [row["id"] for row in dead] == [int(job)]

        # Without a terminal to ask on, a bulk retry refuses and changes nothing.
        refusal = cli_failure(db, "retry", "--dead-letters")
        assert "will retry 1 dead letters; refusing without --yes" in refusal
        assert cli_json(db, "job", job)["retried_as"] == []

        done = cli_json(db, "retry", "--dead-letters", "--yes")
        assert [old for old, _new in done["retried"]] == [int(job)]
        new = str(done["retried"][0][1])
        wait_until(lambda: cli_json(db, "job", new)["status"] == "completed")
        assert cli_json(db, "job", new)["retry_of"] == int(job)
        assert len(cli_json(db, "job", new)["attempts"]) == 3  # the same declared policy
        # The retry failed again: it is the only dead letter now, not the job it retried.
        again = cli_json(db, "retry", "--dead-letters", "--yes")["retried"]
        assert [old for old, _new in again] == [int(new)]
    finally:
        worker.stop()


def test_bad_retry_options_are_refused_in_one_line(tmp_path):
    path = tmp_path / "Data.fs"
    db = file_database(path)
    cli_json(db, "put", "operator.add", "1", "2")  # one job
    cases = [
        (["--retry", "0"], 2, "0 is not in the range 1<=x<=1000"),
        (["--retry", "2", "--retry-on", "json.dumps"], 1, "is not an exception class"),
        (["--retry", "2", "--retry-on", "NoSuchError"], 1, "is not an exception class"),
        (["--backoff", "3"], 1, "go with --retry ATTEMPTS"),
        (["--retry", "2", "--retry-policy", "never"], 1, "not both"),
    ]
    for options, code, message in cases:
        error = cli_failure(db, "put", "operator.add", "1", "2", *options, code=code)
        assert message in error and error.count("\n") <= 1, (options, error)
    assert len(cli_json(db, "jobs", "--state", "pending")) == 1  # nothing was put
    assert "give a JOB_ID or --dead-letters" in cli_failure(db, "retry", code=2)
    assert "give a JOB_ID or --dead-letters" in cli_failure(
        db, "retry", "1", "--dead-letters", code=2
    )
    assert "go with --dead-letters" in cli_failure(db, "retry", "1", "--queue", "x", code=2)
    assert "unknown state" not in cli_failure(db, "retry", "--dead-letters", "--since", "x", code=2)
