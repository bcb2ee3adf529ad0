"""The dashboard's pages, JSON and actions through Flask's test client, on a real database."""

from __future__ import annotations

import operator

import pytest
import transaction

import zasync
from zasync.ops import views
from zasync.testing import running_dispatcher, wait_for, wait_for_result
from zasync.web import is_loopback, make_app

TOKEN = "s3cret-token"


@pytest.fixture
def site(zasync_db, zasync_conn):
    queue = zasync.get_queue(zasync_conn)
    queue.quotas.create("reports", size=1)
    ok = queue.put(zasync.Job(operator.mul, 6, 7))
    bad = queue.put(zasync.Job(operator.truediv, 1, 0))
    transaction.commit()
    with running_dispatcher(zasync_db, poll_interval=0.1):
        wait_for_result(ok)
        wait_for_result(bad)
        wait_for(lambda: bad.key is not None)
    later = queue.put(zasync.Job(operator.add, 1, 2), begin_after=zasync.utcnow() + _hour())
    transaction.commit()
    app = make_app(zasync_db, TOKEN)
    ids = {"ok": views.job_id(ok), "bad": views.job_id(bad), "later": views.job_id(later)}
    return app.test_client(), ids, zasync_conn


def _hour():
    import datetime

    return datetime.timedelta(hours=1)


def test_pages_show_queues_jobs_and_a_traceback(site):
    web, ids, _ = site
    page = web.get("/").get_data(as_text=True)
    assert 'class="count-failed"' in page and "<svg" in page and "reports: 0/1" in page
    jobs = web.get("/jobs?state=failed").get_data(as_text=True)
    assert f'data-id="{ids["bad"]}"' in jobs and f'data-id="{ids["ok"]}"' not in jobs
    job = web.get(f"/jobs/{ids['bad']}").get_data(as_text=True)
    assert "ZeroDivisionError" in job and 'id="retry"' in job
    data = web.get(f"/api/jobs/{ids['ok']}").get_json()
    assert data["result"] == 42
    overview = web.get("/api/overview").get_json()
    assert overview["queues"][0]["counts"]["failed"] == 1
    assert "zasync_jobs{" in web.get("/metrics").get_data(as_text=True)


def test_errors_unknown_job_and_bad_filter(site):
    web, _, _ = site
    missing = web.get("/jobs/999999")
    assert missing.status_code == 404 and "no job with id 999999" in missing.get_data(as_text=True)
    bad = web.get("/api/jobs?state=done")
    assert bad.status_code == 400 and "unknown state 'done'" in bad.get_json()["error"]


def test_actions_need_the_token_and_a_post(site):
    web, ids, conn = site
    assert web.get(f"/jobs/{ids['bad']}/retry").status_code == 405
    refused = web.post(f"/jobs/{ids['bad']}/retry")
    assert refused.status_code == 403
    wrong = web.post(f"/jobs/{ids['bad']}/retry", data={"token": "nope"})
    assert wrong.status_code == 403
    transaction.begin()
    assert views.job_info(conn, ids["bad"])["retried_as"] == []  # nothing changed
    done = web.post(f"/jobs/{ids['bad']}/retry", data={"token": TOKEN})
    assert done.status_code == 303 and "/jobs/" in done.headers["Location"]
    transaction.begin()
    assert len(views.job_info(conn, ids["bad"])["retried_as"]) == 1
    header = {"X-Zasync-Token": TOKEN}
    cancelled = web.post(f"/jobs/{ids['later']}/cancel", headers=header).get_json()
    assert cancelled["message"] == "cancelled"
    again = web.post(f"/jobs/{ids['later']}/cancel", headers=header)
    assert again.status_code == 400 and "cannot cancel" in again.get_json()["error"]
    resized = web.post(
        "/quotas/resize", data={"quota": "reports", "size": "4"}, headers=header
    ).get_json()
    assert resized["size"] == 4 and resized["old_size"] == 1


def test_reading_beyond_loopback_needs_the_token(zasync_db):
    web = make_app(zasync_db, TOKEN, read_needs_token=True).test_client()
    assert web.get("/").status_code == 401
    assert web.get("/api/overview").status_code == 401
    first = web.get(f"/?token={TOKEN}")
    assert first.status_code == 200
    assert web.get("/jobs").status_code == 200  # the cookie now carries it
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
    with pytest.raises(ValueError):
        make_app(zasync_db, "")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("threads", "0", "agent threads must be an integer from 1 to 1000, not 0"),
        ("threads", "1001", "agent threads must be an integer from 1 to 1000, not 1001"),
        ("size", "-1", "agent size must be an integer >= 0, not -1"),
        ("threads", "four", "threads must be a whole number, not 'four'"),
        ("size", "2.5", "size must be a whole number, not '2.5'"),
    ],
)
def test_agent_resize_refuses_what_the_cli_refuses(site, field, value, message):
    web, _, conn = site
    header = {"X-Zasync-Token": TOKEN}
    transaction.begin()
    (uuid,) = zasync.get_queue(conn).dispatchers.keys()
    form = {"dispatcher": str(uuid), "agent": "main", field: value}
    refused = web.post("/agents/resize", data=form, headers=header)
    assert refused.status_code == 400 and refused.get_json()["error"] == message
    transaction.begin()
    agent = zasync.get_queue(conn).dispatchers[uuid]["main"]
    assert (agent.size, agent.threads) == (3, 3)  # unchanged
    resized = web.post("/agents/resize", data={**form, field: "2"}, headers=header).get_json()
    assert resized[field] == 2


def test_pause_and_resume_a_queue_from_the_dashboard(site):
    web, _, conn = site
    page = web.get("/").get_data(as_text=True)
    assert 'action="/queues/pause"' in page and "running" in page
    assert web.post("/queues/pause", data={"queue": ""}).status_code == 403  # no token
    transaction.begin()
    assert not zasync.get_queue(conn).paused
    header = {"X-Zasync-Token": TOKEN}
    long_reason = web.post("/queues/pause", data={"reason": "x" * 201}, headers=header)
    assert long_reason.status_code == 400
    assert "a pause reason is a string of at most 200" in long_reason.get_json()["error"]
    unknown = web.post("/queues/pause", data={"queue": "nope"}, headers=header)
    assert unknown.status_code == 404 and "no queue named 'nope'" in unknown.get_json()["error"]
    transaction.begin()
    assert not zasync.get_queue(conn).paused  # nothing changed
    done = web.post("/queues/pause", data={"queue": "", "reason": "upgrade", "token": TOKEN})
    assert done.status_code == 303
    page = web.get("/").get_data(as_text=True)
    assert 'class="paused"' in page and "upgrade" in page and 'action="/queues/resume"' in page
    assert web.get("/api/overview").get_json()["queues"][0]["paused"] is True
    assert 'zasync_queue_paused{queue=""} 1.0' in web.get("/metrics").get_data(as_text=True)
    resumed = web.post("/queues/resume", data={"queue": ""}, headers=header).get_json()
    assert resumed["changed"] is True
    transaction.begin()
    assert not zasync.get_queue(conn).paused
