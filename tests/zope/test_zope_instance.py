"""zasync inside a real Zope 6 WSGI instance: a request puts a job, the job runs as that user."""

from __future__ import annotations


def test_a_request_puts_a_job_that_runs_as_its_user_in_the_site(zope_worker):
    status, body = zope_worker.request("POST", "/@@zasync-put", {"folder_id": "made"})
    assert status == 200, body
    state = zope_worker.wait_for_outcome(body["job"])
    assert state["outcome"] == "succeeded", state
    status, folder = zope_worker.request("GET", "/@@zasync-folder", {"id": "made"})
    assert status == 200, folder
    assert folder["made_by"] == "admin"  # it ran as the user who put it
    assert folder["url_seen"] == f"{zope_worker.url}/made"  # with the putter's URLs
    assert folder["request_seen"] == "True"
    assert "zasync: worker" in zope_worker.log_text()


def test_a_request_that_fails_after_its_put_leaves_no_job(zope_worker):
    status, _ = zope_worker.request("POST", "/@@zasync-put-then-fail", {"folder_id": "never"})
    assert status == 500
    # A job put later gets an id; the failed request's job never existed: its folder never comes.
    status, body = zope_worker.request("POST", "/@@zasync-put", {"folder_id": "later"})
    zope_worker.wait_for_outcome(body["job"])
    assert zope_worker.request("GET", "/@@zasync-folder", {"id": "never"})[0] == 404


def test_a_user_without_the_permission_is_refused_at_the_put(zope_worker):
    added = zope_worker.request(
        "POST", "/@@zasync-add-user", {"name": "reader", "password": "pw", "roles": ""}
    )
    assert added[0] == 200, added
    status, body = zope_worker.request(
        "POST", "/@@zasync-put", {"folder_id": "denied"}, user=("reader", "pw")
    )
    assert status in (401, 403), body
    assert zope_worker.request("GET", "/@@zasync-folder", {"id": "denied"})[0] == 404


def test_urls_in_the_job_are_those_of_the_virtual_host_that_put_it(zope_worker):
    path = "/VirtualHostBase/https/www.example.com:443/VirtualHostRoot/@@zasync-put"
    status, body = zope_worker.request("POST", path, {"folder_id": "hosted"})
    assert status == 200, body
    zope_worker.wait_for_outcome(body["job"])
    folder = zope_worker.request("GET", "/@@zasync-folder", {"id": "hosted"})[1]
    assert folder["url_seen"] == "https://www.example.com/hosted"


def test_a_job_whose_user_was_deleted_fails_with_a_clear_error(zope_worker):
    zope_worker.request(
        "POST", "/@@zasync-add-user", {"name": "leaver", "password": "pw", "roles": "Manager"}
    )
    status, body = zope_worker.request(
        "POST",
        "/@@zasync-put-later",
        {"folder_id": "orphan", "seconds": "2"},
        user=("leaver", "pw"),
    )
    assert status == 200, body
    assert zope_worker.request("POST", "/@@zasync-delete-user", {"name": "leaver"})[0] == 200
    state = zope_worker.wait_for_outcome(body["job"])
    assert state["outcome"] == "failed"
    assert "'leaver' who put this job no longer exists" in state["error"]
    assert zope_worker.request("GET", "/@@zasync-folder", {"id": "orphan"})[0] == 404


def test_a_job_whose_object_was_deleted_fails_with_a_clear_error(zope_worker):
    zope_worker.request("POST", "/manage_addProduct/OFSP/manage_addFolder", {"id": "box"})
    status, body = zope_worker.request(
        "POST", "/box/@@zasync-put-later", {"folder_id": "inner", "seconds": "2"}
    )
    assert status == 200, body
    assert zope_worker.request("POST", "/@@zasync-remove", {"id": "box"})[0] == 200
    state = zope_worker.wait_for_outcome(body["job"])
    assert state["outcome"] == "failed"
    assert "the object this job was put for, /box, no longer exists" in state["error"]


def test_a_functional_test_can_run_the_jobs_at_once_without_a_worker(tmp_path):
    from zope_instances import ZopeInstance

    instance = ZopeInstance(tmp_path / "instance", "worker off")
    instance.start()
    try:
        status, body = instance.request("POST", "/@@zasync-put", {"folder_id": "at-once"})
        assert status == 200, body
        assert instance.job_state(body["job"])["status"] == "pending"  # no worker here
        assert instance.request("POST", "/@@zasync-run-now") == (200, 1)
        assert instance.job_state(body["job"])["outcome"] == "succeeded"
        folder = instance.request("GET", "/@@zasync-folder", {"id": "at-once"})[1]
        assert folder["made_by"] == "admin"
    finally:
        instance.stop()


def test_a_job_that_commits_on_its_way_keeps_its_user_and_urls(zope_worker):
    status, body = zope_worker.request("POST", "/@@zasync-put-committing", {"folder_id": "steps"})
    assert status == 200, body
    state = zope_worker.wait_for_outcome(body["job"])
    assert state["outcome"] == "succeeded", state
    folder = zope_worker.request("GET", "/@@zasync-folder", {"id": "steps"})[1]
    assert folder == {
        "made_by": "admin",
        "url_seen": f"{zope_worker.url}/steps",
        "request_seen": "True",
    }


def test_a_deleted_object_is_never_replaced_by_one_acquired_from_above(zope_worker):
    for path, name in (("", "box"), ("/box", "report"), ("", "report")):
        added = zope_worker.request(
            "POST", f"{path}/manage_addProduct/OFSP/manage_addFolder", {"id": name}
        )
        assert added[0] == 200, added
    status, body = zope_worker.request(
        "POST", "/box/report/@@zasync-put-later", {"folder_id": "made", "seconds": "2"}
    )
    assert status == 200, body
    assert zope_worker.request("POST", "/box/@@zasync-remove", {"id": "report"})[0] == 200
    state = zope_worker.wait_for_outcome(body["job"])
    assert state["outcome"] == "failed", state  # not run on /report, found by acquisition
    assert "/box/report, no longer exists" in state["error"]


def test_sigterm_stops_the_worker_gracefully(tmp_path):
    from zope_instances import ZopeInstance

    instance = ZopeInstance(tmp_path / "instance", "worker on\npoll-interval 0.2")
    instance.start()
    instance.stop()  # SIGTERM, as containers and service managers send
    assert "stopping worker" in instance.log_text()
