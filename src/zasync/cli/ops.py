"""The operations commands of ``zasync``: read what the database holds, and act on it.

Registered on :data:`zasync.cli.main`.  Read commands print a table (or text)
and accept ``--json``; act commands print what they did, and ``--json`` too.
Errors (unknown ids, bad filters, wrong states) exit with status 1 and one
line saying what is wrong, and change nothing.  None of them creates a
database.  ``purge`` says what it will delete and asks first (``--yes`` skips
the question; without a terminal to ask on, it refuses).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click
import transaction

from zasync import clock
from zasync.cli._common import (
    CONNECT_TIMEOUT,
    CliError,
    check_port,
    database,
    fail,
    stdin_is_interactive,
)
from zasync.interfaces import ZasyncError
from zasync.model.queue import install_queues
from zasync.ops import actions, monitor
from zasync.ops.durations import parse_duration
from zasync.storage.database import default_uri, file_path, one_line

F = TypeVar("F", bound=Callable[..., Any])
ERRORS = (ZasyncError, LookupError, ValueError)


@contextlib.contextmanager
def _database(obj: dict[str, Any]) -> Iterator[Any]:
    with database(obj) as db:
        yield db


def _read(obj: dict[str, Any], query: Callable[[Any], Any]) -> Any:
    """Run ``query(conn)`` on a fresh connection; errors become one-line CLI errors."""
    with _database(obj) as db:
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        try:
            return query(conn)
        except ERRORS as e:
            raise CliError(one_line(_message(e))) from e
        finally:
            tm.abort()
            conn.close()


def _act(obj: dict[str, Any], action: Callable[[Any], Any]) -> Any:
    with _database(obj) as db:
        try:
            return action(db)
        except ERRORS as e:
            raise CliError(one_line(_message(e))) from e


def _message(error: BaseException) -> str:
    if isinstance(error, KeyError | LookupError) and error.args:
        return str(error.args[0])
    return str(error)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    # Piped output (scripts, grep) gets full lines rather than 80 columns.
    Console(width=None if sys.stdout.isatty() else 240).print(table)


def _filter_options(func: F) -> F:
    options = [
        click.option(
            "--state",
            "states",
            multiple=True,
            metavar="STATE",
            help="Keep jobs in this state (repeatable): " + ", ".join(monitor.STATES) + ".",
        ),
        click.option(
            "--callable",
            "callable_glob",
            default=None,
            metavar="GLOB",
            help="Keep jobs whose callable's dotted name matches, e.g. 'myapp.reports.*'.",
        ),
        click.option("--since", default=None, help="Keep jobs at or after this long ago (5m)."),
        click.option("--before", default=None, help="Keep jobs before this long ago (1h)."),
        click.option("--queue", "queue_name", default=None, help="Only this queue."),
        click.option("--json", "as_json", is_flag=True, help="Print JSON."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _make_filter(
    states: tuple[str, ...],
    callable_glob: str | None,
    since: str | None,
    before: str | None,
    queue_name: str | None,
) -> monitor.JobFilter:
    try:
        return monitor.make_filter(states, callable_glob, since, before, queue_name)
    except ValueError as e:
        raise click.UsageError(str(e)) from None


def _job_rows(jobs: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            j["id"],
            j["queue"],
            j["status"] + (f" ({j['outcome']})" if j["outcome"] else ""),
            j["callable"],
            j["active_start"] or j["begin_after"],
            None if j["duration"] is None else f"{j['duration']:.3f}s",
            "requested" if j["cancel_requested"] and not j["outcome"] else "",
        ]
        for j in jobs
    ]


JOB_COLUMNS = ["id", "queue", "status", "callable", "started/due", "duration", "cancel"]


def register(main: click.Group) -> None:
    """Add the operations commands to the ``zasync`` group."""

    # -- read ------------------------------------------------------------------------

    @main.command()
    @_filter_options
    @click.option("--limit", type=click.IntRange(0), default=50, show_default=True,
                  help="At most this many jobs (0: all).")  # fmt: skip
    @click.pass_obj
    def jobs(obj: dict[str, Any], /, limit: int, as_json: bool, **filters: Any) -> None:
        """List jobs: running, pending, then finished (newest first), with filters.

        Example: zasync jobs --state failed --since 1h --callable 'myapp.*'
        """
        chosen = _make_filter(**filters)
        found = _read(obj, lambda c: monitor.list_jobs(c, chosen, limit or None))
        if as_json:
            _print_json(found)
        else:
            _table(JOB_COLUMNS, _job_rows(found))

    @main.command()
    @_filter_options
    @click.pass_obj
    def count(obj: dict[str, Any], /, as_json: bool, **filters: Any) -> None:
        """Count the jobs that the filters keep.  Example: zasync count --state pending"""
        chosen = _make_filter(**filters)
        number = _read(obj, lambda c: monitor.count_jobs(c, chosen))
        click.echo(json.dumps({"count": number}) if as_json else str(number))

    @main.command()
    @click.argument("job_id")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_obj
    def job(obj: dict[str, Any], job_id: str, as_json: bool) -> None:
        """Show one job: call, arguments, times, result or traceback, progress, callbacks."""
        info = _read(obj, lambda c: monitor.job_info(c, job_id))
        if as_json:
            _print_json(info)
            return
        for key in ("id", "queue", "status", "outcome", "callable", "call", "dispatcher",
                    "agent", "begin_after", "active_start", "active_end", "duration",
                    "quota_names", "progress", "cancel_request", "retry_of", "retried_as",
                    "error"):  # fmt: skip
            if info.get(key) not in (None, [], ""):
                click.echo(f"{key + ':':15} {info[key]}")
        if info["result"] is not None:
            click.echo(f"{'result:':15} {info['result']!r}")
        for step in info["history"]:
            click.echo(f"{'history:':15} {step['at']} {step['status']}")

        def tree(nodes: list[dict[str, Any]], depth: int) -> None:
            for node in nodes:
                state = node["status"] + (f" ({node['outcome']})" if node["outcome"] else "")
                click.echo(
                    f"{'callback:':15} {'  ' * depth}{node['id']} {node['callable']} {state}"
                )
                tree(node["callbacks"], depth + 1)

        tree(info["callbacks"], 0)
        if info["traceback"]:
            click.echo(info["traceback"])

    @main.command()
    @click.argument("job_id")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_obj
    def traceback(obj: dict[str, Any], job_id: str, as_json: bool) -> None:
        """Print the traceback of a failed job."""
        text = _read(obj, lambda c: monitor.traceback(c, job_id))
        click.echo(json.dumps({"id": int(monitor.parse_job_id(job_id)), "traceback": text})
                   if as_json else text.rstrip())  # fmt: skip

    @main.command()
    @_filter_options
    @click.pass_obj
    def jobstats(obj: dict[str, Any], /, as_json: bool, **filters: Any) -> None:
        """Counts by state, and the shortest, longest and mean durations of kept jobs."""
        chosen = _make_filter(**filters)
        stats = _read(obj, lambda c: monitor.job_stats(c, chosen))
        if as_json:
            _print_json(stats)
            return
        _table(["state", "jobs"], [[k, v] for k, v in stats["counts"].items()])
        rows = [
            [
                kind,
                d["shortest"] and f"{d['shortest']['seconds']:.3f}s (job {d['shortest']['id']})",
                d["longest"] and f"{d['longest']['seconds']:.3f}s (job {d['longest']['id']})",
                d["mean"] is not None and f"{d['mean']:.3f}s",
            ]
            for kind, d in stats["durations"].items()
        ]
        _table(["kind", "shortest", "longest", "mean"], rows)

    def _one(name: str, query: Callable[[Any, monitor.JobFilter], Any], doc: str) -> None:
        @_filter_options
        @click.pass_obj
        def command(obj: dict[str, Any], /, as_json: bool, **filters: Any) -> None:
            chosen = _make_filter(**filters)
            found = _read(obj, lambda c: query(c, chosen))
            if as_json:
                _print_json(found)
            elif found is None:
                click.echo("none")
            else:
                _table(JOB_COLUMNS, _job_rows([found]))

        command.__doc__ = doc
        main.command(name)(command)

    _one("lastcompleted", monitor.last_completed, "Show the most recently completed job.")
    _one("nextpending", monitor.next_pending, "Show the pending job that will be claimed next.")

    @main.command()
    @click.option("--queue", "queue_name", default=None, help="Only this queue.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_obj
    def dispatchers(obj: dict[str, Any], queue_name: str | None, as_json: bool) -> None:
        """Workers (dispatchers) by queue: alive/dead/stopped, last ping, agents, running jobs."""
        found = _read(obj, lambda c: monitor.dispatchers(c, queue_name))
        if as_json:
            _print_json(found)
            return
        rows = []
        for d in found:
            for agent in d["agents"] or [None]:
                rows.append([
                    repr(d["queue"]), d["uuid"], _state_text(d), d["last_ping"],
                    agent and agent["name"], agent and f"{agent['threads']}/{agent['size']}",
                    agent and ", ".join(str(j["id"]) for j in agent["jobs"]),
                ])  # fmt: skip
        _table(["queue", "uuid", "state", "last ping", "agent", "threads/size", "jobs"], rows)

    @main.command()
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_obj
    def uuids(obj: dict[str, Any], as_json: bool) -> None:
        """The UUIDs of all registered workers."""
        found = _read(obj, monitor.uuids)
        click.echo(json.dumps(found) if as_json else "\n".join(found))

    @main.command()
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def utcnow(as_json: bool) -> None:
        """The current UTC time, as zasync sees it."""
        now = clock.utcnow().isoformat()
        click.echo(json.dumps({"utcnow": now}) if as_json else now)

    # -- act --------------------------------------------------------------------------

    def _done(data: dict[str, Any], as_json: bool, text: str) -> None:
        click.echo(json.dumps(data) if as_json else text)

    @main.command()
    @click.argument("job_id")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_obj
    def retry(obj: dict[str, Any], job_id: str, as_json: bool) -> None:
        """Put a failed job again: a new job with the same call and options."""
        done = _act(obj, lambda db: actions.retry_job(db, job_id))
        _done(done, as_json, f"job {done['retried']} retried as job {done['id']}")

    @main.command()
    @click.argument("job_id")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_obj
    def remove(obj: dict[str, Any], job_id: str, as_json: bool) -> None:
        """Take a pending job out of its queue (it will never run)."""
        done = _act(obj, lambda db: actions.remove_job(db, job_id))
        _done(done, as_json, f"job {done['removed']} removed from queue {done['queue']!r}")

    @main.command()
    @click.argument("job_id")
    @click.option("--reason", default=None, help="Why; stored with the request.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_obj
    def cancel(obj: dict[str, Any], job_id: str, reason: str | None, as_json: bool) -> None:
        """Cancel a pending job at once, or ask a running job to stop (it decides when)."""
        done = _act(obj, lambda db: actions.cancel_job(db, job_id, reason))
        text = (
            f"job {done['id']} cancelled"
            if done["outcome"] == "cancelled"
            else f"job {done['id']} is running: asked it to stop"
        )
        _done(done, as_json, text)

    @main.group()
    def quota() -> None:
        """Quotas: how many jobs naming them may run at once."""

    @quota.command("resize")
    @click.argument("name")
    @click.argument("size", type=click.IntRange(0))
    @click.option("--queue", "queue_name", default="", show_default=True, help="Queue name.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_obj
    def quota_resize(
        obj: dict[str, Any], name: str, size: int, queue_name: str, as_json: bool
    ) -> None:
        """Change quota NAME's size to SIZE, at once.  Example: zasync quota resize reports 4"""
        done = _act(obj, lambda db: actions.set_quota_size(db, queue_name, name, size))
        _done(done, as_json, f"quota {name!r}: size {done['old_size']} -> {size}")

    @main.group()
    def agent() -> None:
        """Agents: the job slots and threads of each worker."""

    @agent.command("resize")
    @click.argument("worker")
    @click.argument("name", default="main")
    @click.option("--size", type=int, default=None, help="Jobs it may hold (0 or more).")
    @click.option("--threads", type=int, default=None, help="Jobs it runs at once (1 to 1000).")
    @click.option("--queue", "queue_name", default="", show_default=True, help="Queue name.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_obj
    def agent_resize(
        obj: dict[str, Any],
        worker: str,
        name: str,
        size: int | None,
        threads: int | None,
        queue_name: str,
        as_json: bool,
    ) -> None:
        """Resize agent NAME (default main) of WORKER (a UUID or its first characters).

        Example: zasync agent resize 3f2a main --threads 8 --size 32
        """
        done = _act(
            obj, lambda db: actions.set_agent_size(db, queue_name, worker, name, size, threads)
        )
        _done(done, as_json,
              f"agent {name!r} of {done['dispatcher']}: size {done['size']}, "
              f"threads {done['threads']}")  # fmt: skip

    @main.command()
    @click.option("--older-than", required=True, help="A duration: 7d, 12h, 30m.")
    @click.option("--queue", "queue_name", default=None, help="Only this queue.")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask first.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_obj
    def purge(
        obj: dict[str, Any], older_than: str, queue_name: str | None, yes: bool, as_json: bool
    ) -> None:
        """Forget finished jobs that completed longer ago than --older-than.

        Says how many it will delete and asks first; --yes does not ask (scripts, cron).
        """
        try:
            age = parse_duration(older_than)
        except ValueError as e:
            raise click.UsageError(f"bad --older-than: {e}") from None
        where = "every queue" if queue_name is None else f"queue {queue_name!r}"
        found = _act(obj, lambda db: actions.count_purgeable(db, age, queue_name))
        total = sum(found.values())
        if total and not yes:
            plan = f"will delete {total} finished jobs older than {older_than} from {where}"
            if not stdin_is_interactive():
                fail(f"{plan}; refusing without --yes (no terminal to ask on)")
            click.confirm(f"{plan}. Go on?", abort=True, err=True)
        if total:
            done = _act(obj, lambda db: actions.purge_completed(db, age, queue_name))
        else:
            done = {"purged": found, "older_than": age.total_seconds()}
        total = sum(done["purged"].values())
        _done(done, as_json, f"purged {total} finished jobs older than {older_than} from {where}")

    # -- the dashboard -----------------------------------------------------------------

    @main.command()
    @click.option("--host", default="127.0.0.1", show_default=True,
                  help="Address to bind; beyond loopback, reads need the token.")  # fmt: skip
    @click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
    @click.option("--token", envvar="ZASYNC_WEB_TOKEN", show_envvar=True, default=None,
                  help="Secret for actions; printed once if not given.")  # fmt: skip
    @click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME[:PORT]",
                  help="Also answer requests for this Host (a reverse proxy's name); "
                  "repeatable.")  # fmt: skip
    @click.pass_obj
    def web(
        obj: dict[str, Any], host: str, port: int, token: str | None, allowed_hosts: tuple[str, ...]
    ) -> None:
        """Serve the web dashboard (queues, workers, jobs, charts, actions, /metrics)."""
        from zasync import web as web_module

        check_port(host, port, "--port")
        _wait_for_file(obj)
        with database(obj, queues=False) as db:
            _install_default_queue(db)
            if not token:
                token = web_module.new_token()
                click.echo(f"dashboard token (shown once): {token}", err=True)
            click.echo(f"dashboard at http://{host}:{port}/", err=True)
            web_module.serve(db, host, port, token, allowed_hosts)

    # -- a live worker -----------------------------------------------------------------

    @main.command()
    @click.argument("what", type=click.Choice(["status", "jobs", "polls", "job", "jobstats"]))
    @click.argument("job_id", required=False)
    @click.option("--url", envvar="ZASYNC_WORKER_URL", show_envvar=True,
                  default="http://127.0.0.1:9187", show_default=True,
                  help="The worker's --http-port address.")  # fmt: skip
    @click.option("--count", type=click.IntRange(1), default=3, show_default=True,
                  help="polls: how many.")  # fmt: skip
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def live(what: str, job_id: str | None, url: str, count: int, as_json: bool) -> None:
        """Ask a running worker (started with --http-port) about its own threads and polls.

        status: poll status, uptime, active threads; jobs: jobs of its last poll;
        polls: its recent polls; job ID: its record of a job; jobstats: its statistics.
        """
        path = {
            "status": "/live/status",
            "jobs": "/live/jobs",
            "polls": f"/live/polls?count={count}",
            "jobstats": "/live/jobstats",
            "job": f"/live/job/{job_id}",
        }[what]
        if what == "job" and not job_id:
            raise click.UsageError("live job needs a JOB_ID")
        if not url.startswith(("http://", "https://")):
            raise click.BadParameter(f"{url!r} is not an http:// URL", param_hint="'--url'")
        try:
            with urllib.request.urlopen(url.rstrip("/") + path, timeout=10) as response:
                data = json.loads(response.read())
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("error", str(e))
            except (ValueError, AttributeError):
                message = f"{url} answered {e.code} {e.reason}; is it a zasync worker?"
            raise CliError(one_line(str(message))) from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise CliError(
                f"no worker answers at {url} ({one_line(e)}); start it with --http-port"
            ) from None
        if as_json:
            _print_json(data)
        elif what == "status":
            for key, value in data.items():
                click.echo(f"{key + ':':22} {value}")
        elif what == "jobs":
            _table(["id", "call", "thread", "started"],
                   [[j["id"], j["call"], j["thread"], j["started"]] for j in data])  # fmt: skip
        else:
            _print_json(data)


def _wait_for_file(obj: dict[str, Any]) -> None:
    """Give a worker started beside the dashboard the connect timeout to create a new file.

    Services started together (systemd, compose) race; a file still missing
    after that is a mistake, said in one line by the opening that follows.
    """
    path = file_path(obj["db"] or default_uri())
    if path is None:
        return
    deadline = time.monotonic() + obj.get("connect_timeout", CONNECT_TIMEOUT)
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.1)


def _install_default_queue(db: Any) -> None:
    """Install the queues (the default one) if no worker has yet; harmless if one has."""
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    try:
        for attempt in tm.attempts(5):  # a worker starting beside us installs them too
            with attempt:
                install_queues(conn)
    finally:
        tm.abort()
        conn.close()


def _state_text(dispatcher: dict[str, Any]) -> str:
    """A dispatcher's state, with the worker threads that died, if any did."""
    deaths = dispatcher.get("thread_deaths") or 0
    return f"{dispatcher['state']} ({deaths} thread deaths)" if deaths else dispatcher["state"]


def seconds(value: datetime.timedelta | None) -> float | None:
    """A timedelta as seconds (None stays None): how durations appear in JSON."""
    return None if value is None else value.total_seconds()
