"""Views that put jobs as the requesting user, and report on them as JSON."""

from __future__ import annotations

import json
from typing import Any

from Products.Five.browser import BrowserView

import zasync
from zasync.ops import views as zasync_views
from zasync.zope.queues import get_queue, queue_connection
from zasync.zope.run_as import as_user_job, put_as_user

from zope_site_jobs.jobs import add_folder, add_folder_committing_on_the_way, count_up_slowly


def _queue(context: Any) -> Any:
    return get_queue(context)


class PutFolderJob(BrowserView):
    """POST folder_id=...: put a job adding that folder here, as the requesting user."""

    def __call__(self) -> str:
        if self.request.method != "POST":
            self.request.response.setStatus(405)
            return "POST only"
        job = put_as_user(
            _queue(self.context),
            add_folder,
            self.context,
            self.request.form["folder_id"],
            permission="Add Folders",
        )
        self.request.response.setHeader("Content-Type", "application/json")
        return json.dumps({"job": zasync_views.job_id(job)})


class PutThenFail(PutFolderJob):
    """Puts the job, then fails: the request's transaction aborts, and the job with it."""

    def __call__(self) -> str:
        super().__call__()
        raise RuntimeError("the request failed after its put")


class JobState(BrowserView):
    """GET job=ID: the job's status, outcome and error (404 if there is none)."""

    def __call__(self) -> str:
        self.request.response.setHeader("Content-Type", "application/json")
        try:
            info = zasync_views.job_info(
                queue_connection(self.context._p_jar), self.request.form["job"]
            )
        except zasync.ZasyncError:
            self.request.response.setStatus(404)
            return json.dumps({"error": "no such job"})
        return json.dumps(
            {k: info.get(k) for k in ("status", "outcome", "error", "result")}, default=str
        )


class FolderState(BrowserView):
    """GET id=...: the properties the job noted on the folder it added (404 if none)."""

    def __call__(self) -> str:
        self.request.response.setHeader("Content-Type", "application/json")
        folder = self.context.get(self.request.form["id"])
        if folder is None:
            self.request.response.setStatus(404)
            return json.dumps({"error": "no such folder"})
        return json.dumps(
            {k: folder.getProperty(k) for k in ("made_by", "url_seen", "request_seen")}
        )


class AddUser(BrowserView):
    """POST name, password, roles (comma-separated): add a user to this user folder's parent."""

    def __call__(self) -> str:
        form = self.request.form
        roles = [r for r in form.get("roles", "").split(",") if r]
        self.context.acl_users._doAddUser(form["name"], form["password"], roles, [])
        return "added"


class PutCountJob(BrowserView):
    """POST marker=PATH, seconds=S: put a job that adds one to this object's count, slowly."""

    def __call__(self) -> str:
        form = self.request.form
        job = put_as_user(
            _queue(self.context),
            count_up_slowly,
            self.context,
            form["marker"],
            float(form["seconds"]),
        )
        self.request.response.setHeader("Content-Type", "application/json")
        return json.dumps({"job": zasync_views.job_id(job)})


class RemoveObject(BrowserView):
    """POST id=...: delete that object here (to show a job whose context is gone fails)."""

    def __call__(self) -> str:
        self.context.manage_delObjects([self.request.form["id"]])
        return "removed"


class Count(BrowserView):
    """GET: this object's count property."""

    def __call__(self) -> str:
        self.request.response.setHeader("Content-Type", "application/json")
        return json.dumps({"count": self.context.getProperty("count", 0)})


class PutFolderJobLater(BrowserView):
    """POST folder_id=..., seconds=S: like @@zasync-put, due in S seconds."""

    def __call__(self) -> str:
        import datetime

        form = self.request.form
        job = _queue(self.context).put(
            as_user_job(add_folder, self.context, form["folder_id"]),
            begin_after=datetime.timedelta(seconds=float(form["seconds"])),
        )
        self.request.response.setHeader("Content-Type", "application/json")
        return json.dumps({"job": zasync_views.job_id(job)})


class DeleteUser(BrowserView):
    """POST name=...: delete that user from this object's user folder."""

    def __call__(self) -> str:
        self.context.acl_users._doDelUsers([self.request.form["name"]])
        return "deleted"


class JobWorker(BrowserView):
    """GET job=ID: the UUID of the worker whose agent holds the job (empty if none)."""

    def __call__(self) -> str:
        info = zasync_views.job_info(
            queue_connection(self.context._p_jar), self.request.form["job"]
        )
        return str(info.get("dispatcher") or "")


class Where(BrowserView):
    """GET: where the queues are: the database of the default queue, and the main root's keys."""

    def __call__(self) -> str:
        self.request.response.setHeader("Content-Type", "application/json")
        queue = get_queue(self.context)
        root = self.context._p_jar.root()
        return json.dumps(
            {"queue_database": queue._p_jar.db().database_name, "in_main_root": "zasync" in root}
        )


class RunNow(BrowserView):
    """POST: run every due job at once, here (as a functional test does), and say how many."""

    def __call__(self) -> str:
        import transaction

        from zasync.testing import run_until_idle

        transaction.commit()  # what this request changed, before the jobs see the database
        results = run_until_idle(self.context._p_jar.db(), sync=False)
        return str(len(results))


class PutCommittingJob(BrowserView):
    """POST folder_id=...: put a job that commits on its way (see the job)."""

    def __call__(self) -> str:
        job = put_as_user(
            _queue(self.context),
            add_folder_committing_on_the_way,
            self.context,
            self.request.form["folder_id"],
        )
        self.request.response.setHeader("Content-Type", "application/json")
        return json.dumps({"job": zasync_views.job_id(job)})
