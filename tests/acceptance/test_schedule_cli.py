"""``zasync schedule`` and the dashboard's schedules page, as an operator uses them."""

from __future__ import annotations

import json

import ZODB
import ZODB.FileStorage

import zasync
from zasync.web import make_app

from processes import file_database, zasync_cli
from workers import WorkerProcess, wait_until

TOKEN = "schedule-token"


def test_add_list_pause_resume_run_and_remove(tmp_path):
    db = file_database(tmp_path / "Data.fs")

    def cli(*args, check=True):
        return zasync_cli("--db", db, "schedule", *args, check=check)

    added = json.loads(
        cli("add", "nightly", "operator.add", "1", "2", "--cron", "30 2 * * *",
            "--tz", "Europe/Paris", "--missed", "skip", "--priority", "5", "--json").stdout
    )  # fmt: skip
    assert added["when"] == "At 02:30 every day (Europe/Paris)" and added["missed"] == "skip"
    assert added["next_run"].endswith(("00:30:00+00:00", "01:30:00+00:00"))
    assert "schedule 'often' added: every 2 s" in cli("add", "often", "operator.mul", "6", "7",
                                                      "--every", "2s").stdout  # fmt: skip
    listed = json.loads(cli("list", "--json").stdout)
    assert [s["name"] for s in listed] == ["nightly", "often"]
    assert "At 02:30 every day (Europe/Paris)" in cli("list").stdout

    assert json.loads(cli("pause", "nightly", "--json").stdout)["changed"] is True
    assert "was it running: False" in cli("pause", "nightly").stdout
    assert json.loads(cli("resume", "nightly", "--json").stdout)["paused"] is False
    ran = json.loads(cli("run", "nightly", "--json").stdout)
    shown = json.loads(zasync_cli("--db", db, "job", str(ran["id"]), "--json").stdout)
    assert shown["status"] == "pending" and shown["priority"] == 5

    refusals = [
        (["add", "bad", "operator.add", "--cron", "61 * * * *"], "bad cron expression"),
        (["add", "bad", "operator.add", "--every", "0s"], "at least 1 seconds"),
        (["add", "bad", "operator.add", "--every", "5m", "--tz", "Nowhere/City"], "time zone"),
        (["add", "nightly", "operator.add", "--every", "5m"], "has a schedule named 'nightly'"),
        (["add", "bad", "operator.add"], "either cron= or every="),
        (["add", "bad", "no.such.function", "--every", "5m"], "cannot import 'no.such.function'"),
        (["pause", "nosuch"], "has no schedule 'nosuch'"),
    ]
    for args, message in refusals:
        done = cli(*args, check=False)
        assert done.returncode == 1 and message in done.stderr, (args, done.stderr)
        assert done.stderr.count("\n") == 1
    assert len(json.loads(cli("list", "--json").stdout)) == 2  # nothing added

    worker = WorkerProcess(db, tmp_path / "worker.log")
    try:
        worker.wait_for_log("serving ")

        def often_ran_twice() -> bool:
            found = json.loads(cli("list", "--json").stdout)
            return next(s for s in found if s["name"] == "often")["runs"] >= 2

        wait_until(often_ran_twice, message="the schedule never ran twice")
        last = next(s for s in json.loads(cli("list", "--json").stdout) if s["name"] == "often")

        def job(ident):
            return json.loads(zasync_cli("--db", db, "job", str(ident), "--json").stdout)

        wait_until(lambda: job(last["last_job"])["result"] == 42)
    finally:
        worker.stop()
    assert "removed after" in cli("remove", "often").stdout
    assert [s["name"] for s in json.loads(cli("list", "--json").stdout)] == ["nightly"]


def test_the_dashboard_lists_schedules_and_acts_with_the_token(tmp_path):
    path = tmp_path / "Data.fs"
    file_database(path)
    opened = ZODB.DB(ZODB.FileStorage.FileStorage(str(path)))
    try:
        with opened.transaction() as conn:
            zasync.add_schedule(zasync.get_queue(conn), "report", sum, [1, 2], every=3600)
        web = make_app(opened, TOKEN).test_client()
        page = web.get("/schedules").get_data(as_text=True)
        assert 'data-name="report"' in page and "every 3600 s" in page
        form = {"queue": "", "name": "report"}
        assert web.post("/schedules/pause", data=form).status_code == 403
        done = web.post("/schedules/pause", data={**form, "token": TOKEN})
        assert done.status_code == 303 and "pause" in done.headers["Location"]
        assert ">paused<" in web.get("/schedules").get_data(as_text=True)
        ran = web.post("/schedules/run", data=form, headers={"X-Zasync-Token": TOKEN}).get_json()
        assert ran["schedule"] == "report" and ran["id"]
        assert web.post("/schedules/explode", data={**form, "token": TOKEN}).status_code == 404
        missing = web.post("/schedules/pause", data={"name": "nope", "token": TOKEN})
        assert missing.status_code == 404 and "no schedule" in missing.get_data(as_text=True)
        assert web.get("/api/schedules").get_json()[0]["paused"] is True
        metrics = web.get("/metrics").get_data(as_text=True)
        assert 'zasync_schedule_runs_total{queue="",schedule="report"} 1.0' in metrics
        assert "zasync_schedule_next_run_timestamp_seconds{" not in metrics  # paused
        web.post("/schedules/resume", data=form, headers={"X-Zasync-Token": TOKEN})
        metrics = web.get("/metrics").get_data(as_text=True)
        assert 'zasync_schedule_next_run_timestamp_seconds{queue="",schedule="report"}' in metrics
    finally:
        opened.close()
