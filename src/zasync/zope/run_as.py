"""Jobs that run as the user who put them, in the site, on the object they were put for.

Inside a request (a browser view, a form handler)::

    from zasync.zope.run_as import put_as_user

    job = put_as_user(queue, myapp.jobs.reindex, context, "full", permission="Manage portal")

captures, in the caller's transaction, who put the job (the user id and the
path of the user folder that holds the user), the local site, the path of
``context``, and what the request's URLs need (the server URL and the
virtual host root).  The job then calls ``reindex(context, "full")`` with
all of it restored: a request whose ``absolute_url()`` gives the same URLs
as the one that put the job, the user's security manager, the local site
and the global request.  They are torn down after the job's transaction
ends, so that what runs at commit (a catalog's indexing queue, event
subscribers) still has them.

Refused at the put, in one line and with nothing put: an anonymous user,
a ``context`` that is not in the database, and, with ``permission``, a user
who lacks it on ``context`` (``AccessControl.Unauthorized``).  When the job
runs, a user who no longer exists, a context that no longer exists, or a
permission the user lost fail the job with a clear error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import transaction

from zasync.errors import InvalidValueError, ZasyncError
from zasync.model.job import Job
from zasync.runtime.local import local


class RunAsUserError(ZasyncError):
    """A job put with ``put_as_user`` cannot run as its user: the user or its object is gone."""


def _path(ob: Any) -> tuple[str, ...]:
    return tuple(ob.getPhysicalPath())


def capture(context: Any, permission: str | None = None) -> dict[str, Any]:
    """What a job needs to run as the current user on ``context`` (plain data, stored)."""
    from AccessControl import Unauthorized
    from AccessControl.SecurityManagement import getSecurityManager
    from Acquisition import aq_inner, aq_parent
    from zope.component.hooks import getSite
    from zope.globalrequest import getRequest

    if not hasattr(context, "getPhysicalPath"):
        raise InvalidValueError(f"put_as_user needs an object of the site, not {context!r:.60}")
    root = context.getPhysicalRoot()
    if getattr(root, "_p_jar", None) is None or getattr(context, "_p_jar", None) is None:
        raise InvalidValueError(
            "put_as_user needs an object already stored in the database: for one made in "
            "this request, call transaction.savepoint() before the put"
        )
    manager = getSecurityManager()
    user = manager.getUser()
    user_id = user.getId() if user is not None else None
    if user_id is None:
        raise InvalidValueError(
            "put_as_user needs a user of a user folder: this request has none (anonymous, "
            "or the emergency or system user)"
        )
    if permission is not None and not manager.checkPermission(permission, context):
        raise Unauthorized(f"{user_id!r} may not {permission!r} on {'/'.join(_path(context))}")
    folder = aq_parent(aq_inner(user))
    if not hasattr(folder, "getPhysicalPath"):
        raise InvalidValueError(
            f"put_as_user needs a user wrapped in its user folder, not {user_id!r} alone "
            "(use user.__of__(user_folder) with newSecurityManager)"
        )
    site = getSite()
    request = getRequest()
    info: dict[str, Any] = {
        "user_id": user_id,
        "user_folder": _path(folder) if hasattr(folder, "getPhysicalPath") else None,
        "site": _path(site) if site is not None and hasattr(site, "getPhysicalPath") else None,
        "context": _path(context),
        # The database of the application root (not of a mounted one holding context).
        "database": root._p_jar.db().database_name,
        "permission": permission,
        "server_url": None,
        "virtual_root": None,
        "virtual_root_path": None,
    }
    if request is not None:
        info["server_url"] = request.get("SERVER_URL")
        virtual = request.other.get("VirtualRootPhysicalPath")
        if virtual is not None:
            info["virtual_root_path"] = tuple(virtual)
            info["virtual_root"] = "/".join(request._script)
    return info


def put_as_user(
    queue: Any,
    func: Callable[..., Any],
    context: Any,
    *args: Any,
    permission: str | None = "View",
    **kwargs: Any,
) -> Job[Any]:
    """Put a job calling ``func(context, *args, **kwargs)`` as the current user; return it.

    ``permission`` (default ``View``) is checked on ``context`` at the put
    and again when the job runs; ``None`` checks nothing (``func`` runs as
    unrestricted code either way: the user matters for the checks it makes
    and for ownership).

    Other ``queue.put`` options are not taken here: put the job yourself
    with ``queue.put(as_user_job(...), ...)`` for those.
    """
    job: Job[Any] = queue.put(as_user_job(func, context, *args, permission=permission, **kwargs))
    return job


def as_user_job(
    func: Callable[..., Any],
    context: Any,
    *args: Any,
    permission: str | None = "View",
    **kwargs: Any,
) -> Job[Any]:
    """The job :func:`put_as_user` puts, not put anywhere yet."""
    return Job(run_as_user, capture(context, permission), func, args, kwargs)


def run_as_user(
    info: dict[str, Any], func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Restore what :func:`capture` saved, call ``func(context, *args, **kwargs)``, tear down.

    Stored by name in the jobs :func:`put_as_user` makes.
    """
    from AccessControl import Unauthorized
    from AccessControl.SecurityManagement import getSecurityManager, newSecurityManager
    from Acquisition import aq_base

    app, request = _application(info)
    teardown = _teardown(request)
    try:
        folder = _exactly(app, info["user_folder"] or ("",))
        if folder is not None and not callable(getattr(aq_base(folder), "getUserById", None)):
            folder = None  # not a user folder (any more)
        user = None if folder is None else folder.getUserById(info["user_id"])
        if user is None:
            raise RunAsUserError(
                f"the user {info['user_id']!r} who put this job no longer exists"
                + ("" if folder is None else f" in {'/'.join(info['user_folder'])}")
            )
        newSecurityManager(request, user.__of__(folder))
        if info["site"] is not None:
            from zope.component.hooks import setSite

            setSite(_exactly(app, info["site"]))
        context = _exactly(app, info["context"])
        if context is None:
            raise RunAsUserError(
                f"the object this job was put for, {'/'.join(info['context'])}, no longer exists"
            )
        permission = info["permission"]
        if permission is not None and not getSecurityManager().checkPermission(permission, context):
            raise Unauthorized(
                f"{info['user_id']!r} may no longer {permission!r} on {'/'.join(info['context'])}"
            )
        result = func(context, *args, **kwargs)
    except BaseException:
        teardown()
        raise
    # Kept until the transaction that stores the job's outcome ends (the job's own
    # commits on the way do not end it), then torn down after that commit's own hooks.
    txn = transaction.get()
    txn.addAfterCommitHook(lambda status: teardown())
    txn.addAfterAbortHook(teardown)
    return result


def _exactly(app: Any, path: tuple[str, ...] | None) -> Any:
    """The object at ``path``, or None: never one found by acquisition under another path."""
    if path is None:
        return None
    found = app.unrestrictedTraverse(path, None)
    if found is None or tuple(found.getPhysicalPath()) != tuple(path):
        return None
    return found


def _application(info: dict[str, Any]) -> tuple[Any, Any]:
    """The Zope application in the job's transaction, wrapped in a request like the putter's."""
    from Testing.makerequest import makerequest
    from zope.globalrequest import setRequest

    job = local.getJob()
    if job is None:
        raise RunAsUserError("a job put with put_as_user runs only in a worker")
    jar = job._p_jar
    name = info["database"]
    if name is not None and name != jar.db().database_name:
        jar = jar.get_connection(name)
    app = makerequest(jar.root()["Application"])
    request = app.REQUEST
    if info["server_url"]:
        url = urlparse(info["server_url"])
        request.setServerURL(protocol=url.scheme, hostname=url.hostname, port=url.port)
    if info["virtual_root_path"] is not None:
        # As a virtual host monster leaves it: URLs start at the virtual root.
        request._script[:] = [part for part in (info["virtual_root"] or "").split("/") if part]
        request.other["VirtualRootPhysicalPath"] = tuple(info["virtual_root_path"])
        request._resetURLS()
    setRequest(request)
    return app, request


def _teardown(request: Any) -> Callable[[], None]:
    """Undo what the job's run set up (once, whichever way its transaction ends)."""
    done: list[bool] = []

    def teardown() -> None:
        if done:
            return
        done.append(True)
        from AccessControl.SecurityManagement import noSecurityManager
        from zope.component.hooks import setSite
        from zope.globalrequest import clearRequest

        noSecurityManager()
        setSite(None)
        clearRequest()
        request.close()

    return teardown
