"""Attempts and dead letters: what a job declared with ``retry=`` shows, and retrying in bulk.

Jobs run in a real dispatcher on the suite's storages; the dashboard is
driven through Flask's test client.
"""

from __future__ import annotations

import operator

import pytest
import transaction

import zasync
from zasync import AgentSpec, Retry
from zasync.errors import InvalidValueError
from zasync.ops import actions, queries, views
from zasync.testing import running_dispatcher, wait_for, wait_for_result
from zasync.web import make_app

import support

TOKEN = "dead-letter-token"
#: Three quick attempts: no wait between them, so that the test waits on nothing but work.
QUICK = Retry(attempts=3, on=(ZeroDivisionError,), backoff=0)


def run(db, *jobs):
    agents = [AgentSpec(name="default"), AgentSpec(name="reports", queue="reports")]
    with running_dispatcher(db, poll_interval=0.05, agents=agents):
        for job in jobs:
            wait_for_result(job)
            wait_for(lambda job=job: job.key is not None)


@pytest.fixture
def letters(zasync_db, zasync_conn):
    """Two dead letters (in two queues), one success after a retry, one plain failure."""
    queues = zasync.get_queues(zasync_conn)
    if "reports" not in queues:
        queues["reports"] = zasync.Queue()
        transaction.commit()
    default, reports = queues[""], queues["reports"]
    support.flaky_registry["dead-letters"] = support.Flaky(ZeroDivisionError, 1)
    jobs = {
        "dead": default.put(zasync.Job(operator.truediv, 1, 0), retry=QUICK),
        "dead_reports": reports.put(zasync.Job(operator.truediv, 2, 0), retry=QUICK),
        "recovered": default.put(zasync.Job(support.flaky, "dead-letters"), retry=QUICK),
        "plain": default.put(zasync.Job(operator.truediv, 3, 0)),
        "cancelled": default.put(zasync.Job(operator.add, 1, 2), begin_after=_hour()),
    }
    transaction.commit()
    zasync.cancel(jobs["cancelled"])
    transaction.commit()
    run(zasync_db, jobs["dead"], jobs["recovered"], jobs["plain"], jobs["dead_reports"])
    transaction.begin()
    return {name: views.job_id(job) for name, job in jobs.items()}


def _hour():
    import datetime

    return datetime.timedelta(hours=1)


def info(conn, ident):
    transaction.begin()
    return views.job_info(conn, ident)


def test_every_attempt_is_in_the_job_history(zasync_conn, letters):
    dead = info(zasync_conn, letters["dead"])
    assert [a["outcome"] for a in dead["attempts"]] == ["retried", "retried", "failed"]
    assert [a["number"] for a in dead["attempts"]] == [1, 2, 3]
    assert all("ZeroDivisionError" in a["error"] for a in dead["attempts"])
    assert all(a["start"] and a["end"] and a["start"] <= a["end"] for a in dead["attempts"])
    assert dead["dead_letter"] is True

    recovered = info(zasync_conn, letters["recovered"])
    assert [a["outcome"] for a in recovered["attempts"]] == ["retried", "succeeded"]
    assert recovered["attempts"][-1]["error"] is None and recovered["dead_letter"] is False

    plain = info(zasync_conn, letters["plain"])
    assert [a["outcome"] for a in plain["attempts"]] == ["failed"] and plain["dead_letter"]


def test_dead_letters_are_failed_jobs_nobody_retried(zasync_conn, letters):
    dead = queries.make_filter(["dead"])
    found = {row["id"] for row in queries.list_jobs(zasync_conn, dead, None)}
    assert found == {letters["dead"], letters["dead_reports"], letters["plain"]}
    only_reports = queries.make_filter(["dead"], queue="reports")
    assert [r["id"] for r in queries.list_jobs(zasync_conn, only_reports)] == [
        letters["dead_reports"]
    ]


def test_bulk_retry_puts_each_dead_letter_once(zasync_db, zasync_conn, letters):
    first = actions.retry_dead_letters(zasync_db, queries.make_filter(queue=""))
    retried = dict(first["retried"])
    assert set(retried) == {letters["dead"], letters["plain"]}
    assert first["skipped"] == [] and first["unretriable"] == {}
    again = actions.retry_dead_letters(zasync_db, queries.make_filter(queue=""))
    assert again["retried"] == []  # retried ones are no longer dead letters

    new = info(zasync_conn, retried[letters["dead"]])
    assert new["retry_of"] == letters["dead"] and new["status"] == "pending"
    assert new["retry_policy"] == repr(QUICK)
    old = info(zasync_conn, letters["dead"])
    assert old["retried_as"] == [retried[letters["dead"]]] and old["dead_letter"] is False
    # The other queue's dead letter was not touched.
    assert info(zasync_conn, letters["dead_reports"])["dead_letter"] is True


def test_bulk_retry_refuses_other_states_and_changes_nothing(zasync_db, zasync_conn, letters):
    with pytest.raises(InvalidValueError, match="takes no state but dead"):
        actions.retry_dead_letters(zasync_db, queries.make_filter(["failed"]))
    assert info(zasync_conn, letters["dead"])["retried_as"] == []


def test_a_letter_retried_between_the_listing_and_its_turn_is_skipped(
    zasync_db, zasync_conn, letters, monkeypatch
):
    listed = queries.list_jobs

    def list_then_someone_retries(conn, filter=None, limit=50):
        rows = listed(conn, filter, limit)
        actions.retry_job(zasync_db, letters["plain"])  # another operator, meanwhile
        return rows

    monkeypatch.setattr(actions, "list_jobs", list_then_someone_retries)
    done = actions.retry_dead_letters(zasync_db, queries.make_filter(queue=""))
    assert [old for old, _ in done["retried"]] == [letters["dead"]]
    assert done["skipped"] == [letters["plain"]]
    assert len(info(zasync_conn, letters["plain"])["retried_as"]) == 1  # not twice


def test_the_dashboard_shows_attempts_and_retries_dead_letters(zasync_db, zasync_conn, letters):
    web = make_app(zasync_db, TOKEN).test_client()
    page = web.get(f"/jobs/{letters['dead']}").get_data(as_text=True)
    assert 'id="attempts"' in page and page.count('class="attempt"') == 3
    assert 'id="dead-letter"' in page
    listing = web.get("/jobs?state=dead&queue=reports").get_data(as_text=True)
    assert 'id="retry-dead-letters"' in listing
    assert f'data-id="{letters["dead_reports"]}"' in listing
    assert f'data-id="{letters["dead"]}"' not in listing

    form = {"queue": "reports", "callable": "", "since": "", "before": ""}
    assert web.post("/dead-letters/retry", data=form).status_code == 403
    assert info(zasync_conn, letters["dead_reports"])["dead_letter"] is True  # nothing changed
    done = web.post("/dead-letters/retry", data={**form, "token": TOKEN})
    assert done.status_code == 303
    assert "state=dead" in done.headers["Location"] and "queue=reports" in done.headers["Location"]
    assert "retried+1+dead+letters" in done.headers["Location"]
    assert info(zasync_conn, letters["dead_reports"])["dead_letter"] is False
    assert info(zasync_conn, letters["dead"])["dead_letter"] is True  # another queue

    as_json = web.post(
        "/dead-letters/retry", data={"queue": "*"}, headers={"X-Zasync-Token": TOKEN}
    )
    assert {old for old, _ in as_json.get_json()["retried"]} == {letters["dead"], letters["plain"]}


def test_a_retry_keeps_the_priority_the_unique_key_and_the_dependencies(zasync_db, zasync_conn):
    queue = zasync.get_queue(zasync_conn)
    first = queue.put(zasync.Job(operator.truediv, 1, 0))
    second = queue.put(
        zasync.Job(operator.add, 1, 1), after=[first], priority=5, unique_key="follow"
    )
    transaction.commit()
    run(zasync_db, first, second)
    transaction.begin()
    assert second.result.check(zasync.DependencyFailedError)
    done = actions.retry_dead_letters(zasync_db, queries.make_filter(queue=""))
    pairs = dict(done["retried"])
    assert list(pairs) == sorted(pairs)  # oldest first: the dependency before its dependant
    transaction.begin()
    new_first = views.get_job(zasync_conn, pairs[views.job_id(first)])
    new_second = views.get_job(zasync_conn, pairs[views.job_id(second)])
    assert new_second.priority == 5 and new_second._unique == ("follow", "started")
    assert new_second._after[0] == (new_first,)  # waits for the retry, not the failed job
    assert queue.waiting == [new_second]
