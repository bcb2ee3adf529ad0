"""The web dashboard: ``zasync web`` (Flask app, served by waitress on 127.0.0.1).

Built by :func:`make_app` (no module-level state).  Pages read through
:mod:`zasync.ops.queries` and :mod:`zasync.ops.views`; actions go through
:mod:`zasync.ops.actions`:

* ``/`` queues with counts by state, dispatchers with liveness and last ping,
  agents and what each runs now, charts of the last hour;
* ``/jobs`` the job list with the CLI's filters (``state``, ``callable``,
  ``since``, ``before``, ``queue``);
* ``/jobs/ID`` one job: call, arguments, history, result or traceback,
  progress, cancellation, callbacks as a tree;
* ``/api/...`` the same as JSON; ``/metrics`` for Prometheus.

Security: every action is a POST that must carry the secret token (form
field ``token`` or header ``X-Zasync-Token``), compared in constant time.
Reading needs the token too when the server is bound beyond loopback
(``?token=`` once sets a cookie).  The token is never logged.  Requests
whose ``Host`` is not the bound address or an allowed name are refused,
and every response forbids framing and carries a Content-Security-Policy
(see :mod:`zasync.ops._http`); waitress bounds and times out connections.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import signal
import threading
from collections.abc import Callable, Collection
from typing import Any

from flask import Flask, Response, g, jsonify, redirect, render_template, request, url_for

from zasync.errors import ConfigurationError, InvalidValueError
from zasync.interfaces import ZasyncError
from zasync.model.tx import read_in_fresh_connection
from zasync.ops import _http, actions, queries, schedules, views
from zasync.ops.metrics import CONTENT_TYPE, database_exposition

TOKEN_HEADER = "X-Zasync-Token"
COOKIE = "zasync_token"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A fresh random token."""
    return secrets.token_urlsafe(24)


def make_app(
    db: Any,
    token: str,
    read_needs_token: bool = False,
    allowed_hosts: Collection[str] | None = None,
) -> Flask:
    """The dashboard for ``db``; actions need ``token``, and reads too if asked.

    ``allowed_hosts`` (see :func:`zasync.ops._http.allowed_hosts`) are the
    ``Host`` values it answers; None answers any (Flask's test client).
    """
    if not token:
        raise ConfigurationError(
            "the dashboard needs a non-empty token: pass token=, e.g. secrets.token_urlsafe()"
        )
    app = Flask(__name__)
    app.config["ZASYNC_DB"] = db
    app.config["ZASYNC_ALLOWED_HOSTS"] = None if allowed_hosts is None else frozenset(allowed_hosts)

    def read(query: Any) -> Any:
        return read_in_fresh_connection(db, query)

    _add_guards(app, token, read_needs_token)
    _add_pages(app, read)
    _add_api(app, read, db)
    _add_actions(app, db)
    return app


def _add_guards(app: Flask, token: str, read_needs_token: bool) -> None:
    """Host check, token checks, security headers, and errors as one-line refusals."""

    def token_ok(given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given).encode(), token.encode())

    @app.context_processor
    def nonce() -> dict[str, str]:
        return {"csp_nonce": g.get("csp_nonce", "")}

    @app.before_request
    def guard() -> Any:
        g.csp_nonce = secrets.token_urlsafe(16)
        hosts = app.config["ZASYNC_ALLOWED_HOSTS"]
        if hosts is not None and not _http.host_allowed(request.host, hosts):
            return Response(_http.MISDIRECTED_BODY, _http.MISDIRECTED, mimetype="text/plain")
        if request.method == "POST":
            given = request.headers.get(TOKEN_HEADER) or request.form.get("token")
            if not token_ok(given):
                return _refuse(403, "this action needs the dashboard's token")
            return None
        if read_needs_token:
            given = request.args.get("token") or request.cookies.get(COOKIE)
            given = given or request.headers.get(TOKEN_HEADER)
            if not token_ok(given):
                return _refuse(401, "reading this dashboard needs its token (?token=...)")
        return None

    @app.after_request
    def remember(response: Response) -> Response:
        if read_needs_token and token_ok(request.args.get("token")):
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        response.headers.update(_http.SECURITY_HEADERS)
        is_page = response.mimetype == "text/html"
        csp = _http.PAGE_CSP.format(nonce=g.get("csp_nonce", "")) if is_page else _http.DATA_CSP
        response.headers["Content-Security-Policy"] = csp
        return response

    @app.errorhandler(ZasyncError)
    @app.errorhandler(LookupError)
    @app.errorhandler(ValueError)
    def user_error(error: Exception) -> Any:
        status = 404 if isinstance(error, LookupError) else 400
        return _refuse(status, str(error.args[0] if error.args else error))


def _add_pages(app: Flask, read: Callable[[Any], Any]) -> None:
    """The HTML pages: the overview, the job list, one job."""

    @app.get("/")
    def overview() -> Any:
        snap = read(queries.snapshot)
        return render_template("overview.html", snap=snap, chart=_chart(snap.timeline))

    @app.get("/jobs")
    def jobs() -> Any:
        form = _filter_args()
        chosen = queries.make_filter(**form)
        found = read(lambda c: queries.list_jobs(c, chosen, 200))
        return render_template(
            "jobs.html",
            jobs=found,
            form=form,
            states=views.STATES,
            message=request.args.get("message"),
        )

    @app.get("/schedules")
    def schedules_page() -> Any:
        found = read(schedules.list_schedules)
        return render_template(
            "schedules.html", schedules=found, message=request.args.get("message")
        )

    @app.get("/jobs/<ident>")
    def job(ident: str) -> Any:
        info = read(lambda c: views.job_info(c, ident))
        return render_template("job.html", job=info, message=request.args.get("message"))


def _add_api(app: Flask, read: Callable[[Any], Any], db: Any) -> None:
    """The same data as JSON, and the database's Prometheus metrics."""

    @app.get("/api/overview")
    def api_overview() -> Any:
        snap = read(queries.snapshot)
        return jsonify(
            queues=snap.queues, dispatchers=snap.dispatchers, timeline=snap.timeline, time=snap.time
        )

    @app.get("/api/jobs")
    def api_jobs() -> Any:
        chosen = queries.make_filter(**_filter_args())
        return jsonify(read(lambda c: queries.list_jobs(c, chosen, 200)))

    @app.get("/api/jobs/<ident>")
    def api_job(ident: str) -> Any:
        return jsonify(read(lambda c: views.job_info(c, ident)))

    @app.get("/api/schedules")
    def api_schedules() -> Any:
        return jsonify(read(schedules.list_schedules))

    @app.get("/metrics")
    def metrics() -> Any:
        return Response(database_exposition(db), content_type=CONTENT_TYPE)


def _add_actions(app: Flask, db: Any) -> None:
    """The POST actions (the guards have checked the token): retry, remove, cancel,
    resize, pause and resume."""

    def done(ident: Any, message: str) -> Any:
        if request.headers.get(TOKEN_HEADER):
            return jsonify(message=message, id=ident)
        return redirect(url_for("job", ident=ident, message=message), code=303)

    @app.post("/jobs/<ident>/retry")
    def retry(ident: str) -> Any:
        result = actions.retry_job(db, ident)
        return done(result["id"], f"retried job {result['retried']} as job {result['id']}")

    @app.post("/dead-letters/retry")
    def retry_dead_letters() -> Any:
        form = {**_filter_args(request.form), "states": ["dead"]}
        result = actions.retry_dead_letters(db, queries.make_filter(**form))
        if request.headers.get(TOKEN_HEADER):
            return jsonify(result)
        back: dict[str, Any] = {
            "state": "dead",
            "queue": "*" if form["queue"] is None else form["queue"],
            "callable": form["callable_glob"] or "",
            "since": form["since"] or "",
            "before": form["before"] or "",
            "message": f"retried {len(result['retried'])} dead letters",
        }
        return redirect(url_for("jobs", **back), code=303)

    @app.post("/jobs/<ident>/remove")
    def remove(ident: str) -> Any:
        result = actions.remove_job(db, ident)
        return done(result["removed"], "removed from its queue")

    @app.post("/jobs/<ident>/cancel")
    def cancel(ident: str) -> Any:
        result = actions.cancel_job(db, ident, request.form.get("reason") or None)
        text = "cancelled" if result["outcome"] == "cancelled" else "asked the job to stop"
        return done(result["id"], text)

    @app.post("/quotas/resize")
    def quota_resize() -> Any:
        result = actions.set_quota_size(
            db, request.form.get("queue", ""), request.form["quota"], _whole(request.form, "size")
        )
        return jsonify(result) if request.headers.get(TOKEN_HEADER) else redirect("/", code=303)

    @app.post("/queues/pause")
    def queue_pause() -> Any:
        result = actions.pause_queue(
            db, request.form.get("queue", ""), request.form.get("reason") or None
        )
        return jsonify(result) if request.headers.get(TOKEN_HEADER) else redirect("/", code=303)

    @app.post("/queues/resume")
    def queue_resume() -> Any:
        result = actions.resume_queue(db, request.form.get("queue", ""))
        return jsonify(result) if request.headers.get(TOKEN_HEADER) else redirect("/", code=303)

    @app.post("/schedules/<action>")
    def schedule_action(action: str) -> Any:
        chosen = {
            "pause": schedules.pause,
            "resume": schedules.resume,
            "remove": schedules.remove,
            "run": schedules.run_now,
        }.get(action)
        if chosen is None:
            return _refuse(404, f"no schedule action {action!r}: pause, resume, remove or run")
        name = request.form.get("name", "")
        result = chosen(db, request.form.get("queue", ""), name)
        if request.headers.get(TOKEN_HEADER):
            return jsonify(result)
        message = f"{action}: schedule {name!r}" + (
            f", job {result['id']}" if "id" in result else ""
        )
        return redirect(url_for("schedules_page", message=message), code=303)

    @app.post("/agents/resize")
    def agent_resize() -> Any:
        form = request.form
        result = actions.set_agent_size(
            db,
            form.get("queue", ""),
            form["dispatcher"],
            form.get("agent", "main"),
            _whole(form, "size") if form.get("size") else None,
            _whole(form, "threads") if form.get("threads") else None,
        )
        return jsonify(result) if request.headers.get(TOKEN_HEADER) else redirect("/", code=303)


def _whole(form: Any, name: str) -> int:
    """A form field that must be a whole number; a ValueError (400) naming it otherwise."""
    text = form.get(name, "")
    try:
        return int(text)
    except ValueError:
        raise InvalidValueError(f"{name} must be a whole number, not {text[:40]!r}") from None


def _filter_args(args: Any = None) -> dict[str, Any]:
    """The job filter a query string (or a form) asks for, as make_filter's arguments."""
    args = request.args if args is None else args
    return {
        "states": [s for s in args.getlist("state") if s],
        "callable_glob": args.get("callable") or None,
        "since": args.get("since") or None,
        "before": args.get("before") or None,
        "queue": args.get("queue") if args.get("queue") not in (None, "*") else None,
    }


def _refuse(status: int, message: str) -> Any:
    wants_json = request.accept_mimetypes.best == "application/json"
    if wants_json or request.path.startswith("/api") or TOKEN_HEADER in request.headers:
        response = jsonify(error=message)
    else:
        response = Response(render_template("error.html", message=message, status=status))
    response.status_code = status
    return response


def _chart(timeline: dict[str, Any], width: int = 600, height: int = 120) -> dict[str, Any]:
    """Bars for succeeded and failed jobs per bucket, and a duration line, as SVG numbers."""
    buckets = timeline.get("buckets", [])
    if not buckets:
        return {"bars": [], "line": "", "width": width, "height": height, "peak": 0}
    peak = max(1, *(b["succeeded"] + b["failed"] for b in buckets))
    longest = max([b["mean_duration"] or 0.0 for b in buckets] + [1e-9])
    step = width / len(buckets)
    bars = []
    points = []
    for i, b in enumerate(buckets):
        ok_h = height * b["succeeded"] / peak
        bad_h = height * b["failed"] / peak
        bars.append(
            {
                "x": round(i * step + 1, 1),
                "w": round(max(step - 2, 1), 1),
                "ok_y": round(height - ok_h, 1),
                "ok_h": round(ok_h, 1),
                "bad_y": round(height - ok_h - bad_h, 1),
                "bad_h": round(bad_h, 1),
                "title": f"{b['start']}: {b['succeeded']} ok, {b['failed']} failed",
            }
        )
        if b["mean_duration"] is not None:
            y = height - height * b["mean_duration"] / longest
            points.append(f"{round(i * step + step / 2, 1)},{round(y, 1)}")
    return {
        "bars": bars,
        "line": " ".join(points),
        "width": width,
        "height": height,
        "peak": peak,
        "longest": longest,
    }


# Waitress: idle connections cost no thread, so allow many and drop them soon.
CONNECTION_LIMIT = 500
IDLE_TIMEOUT = 20  # seconds a connection may stay silent
THREADS = 4
BACKLOG = 1024


def make_server(
    db: Any, host: str, port: int, token: str, allowed_names: Collection[str] = ()
) -> Any:
    """A waitress server for the dashboard (``run()`` serves, ``close()`` stops).

    ``port`` 0 takes a free port (``effective_port`` tells which).  The
    allowed ``Host`` names are the bound address with the real port, the
    loopback names, and ``allowed_names`` (a reverse proxy's public name).
    """
    from waitress import create_server

    app = make_app(db, token, read_needs_token=not is_loopback(host), allowed_hosts=())
    server = create_server(
        app,
        host=host,
        port=port,
        threads=THREADS,
        connection_limit=CONNECTION_LIMIT,
        channel_timeout=IDLE_TIMEOUT,
        cleanup_interval=min(IDLE_TIMEOUT, 5),
        backlog=BACKLOG,
        ident="zasync",
    )
    # Known once bound (port 0 takes a free one); no request is served before run().
    app.config["ZASYNC_ALLOWED_HOSTS"] = _http.allowed_hosts(
        host, int(server.effective_port), allowed_names
    )
    return server


def serve(db: Any, host: str, port: int, token: str, allowed_names: Collection[str] = ()) -> None:
    """Serve the dashboard with waitress until interrupted (SIGINT, or SIGTERM from a supervisor).

    Either signal ends the serving loop and returns, so that the caller
    closes the database cleanly: if this process serves an embedded file to
    others, they are disconnected between their commits, not in the middle.
    """
    server = make_server(db, host, port, token, allowed_names)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stop_serving) if in_main_thread else None
    try:
        server.run()  # returns on KeyboardInterrupt or SystemExit, having closed its sockets
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _stop_serving(signum: int, frame: Any) -> None:
    raise SystemExit(0)
