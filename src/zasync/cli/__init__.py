"""The ``zasync`` command line: ``worker``, ``put``, ``status``, and the operations commands.

The read and act commands (``jobs``, ``job``, ``retry``, ``cancel``, ...) live
in :mod:`zasync._ops_cli`; ``web`` in :mod:`zasync.web`.

Every option can also come from the ``ZASYNC_*`` environment variable shown
in ``--help``.  Read commands accept ``--json``.

Errors reach the user as one line, ``zasync: error: <what>`` (exit status 2
for a bad command line, 1 otherwise; ``zasync -v`` adds the traceback): see
:mod:`zasync._cli_common`.  Only ``worker`` creates a database; the other
commands say so when there is none.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import click
import transaction

from zasync import clock
from zasync.cli._common import (
    CONNECT_TIMEOUT,
    Seconds,
    ZasyncGroup,
    check_port,
    database,
    fail,
)
from zasync.interfaces import COMPLETED, ZasyncError
from zasync.model.job import Job
from zasync.model.queue import get_queue, get_queues
from zasync.ops.durations import parse_duration, parse_time
from zasync.ops.live import start_worker_view
from zasync.runtime.settings import (
    SettingsError,
    agent_from_config,
    agents_from_options,
    flag_options,
    load_config,
    worker_options,
)
from zasync.runtime.worker import resolve, run_worker
from zasync.storage.database import default_uri, redact

PROGRESS = "zasync.progress"


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose < 0 else logging.INFO
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("zasync.events").setLevel(level)
    logging.getLogger("zasync.trace").setLevel(logging.INFO if verbose > 0 else logging.WARNING)
    if verbose > 1:
        logging.getLogger("zasync").setLevel(logging.DEBUG)


@click.group(
    cls=ZasyncGroup,
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "ZASYNC"},
)
@click.option(
    "--db",
    envvar="ZASYNC_DB",
    show_envvar=True,
    default=None,
    help="Database URI: file://PATH (default var/zasync/Data.fs), zeo://HOST:PORT, "
    "postgresql://USER@HOST/DB (RelStorage), memory://",
)
@click.option(
    "--config",
    envvar="ZASYNC_CONFIG",
    show_envvar=True,
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A TOML file (as for `worker --config`): every command takes its `db` when "
    "--db is not given, and the worker its other settings.",
)
@click.option(
    "--connect-timeout",
    type=Seconds(1, 3600),
    default=CONNECT_TIMEOUT,
    show_default=True,
    show_envvar=True,
    help="Seconds to wait for a ZEO or PostgreSQL server before giving up "
    "(a URI's own wait_timeout= or connect_timeout= wins).",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="More logging (-v: job starts/ends and tracebacks of errors, -vv: debug).",
)
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.version_option(package_name="zasync")
@click.pass_context
def main(
    ctx: click.Context,
    db: str | None,
    config: str | None,
    connect_timeout: float,
    verbose: int,
    quiet: bool,
) -> None:
    """zasync: a durable, transactional job queue in a ZODB database.

    Errors print one line, "zasync: error: ..." (exit status 2 for a bad
    command line, 1 otherwise); -v adds the traceback.
    """
    _setup_logging(-1 if quiet else verbose)
    try:
        settings = load_config(config) if config else {}
    except SettingsError as e:
        raise BadSettings(str(e)) from None
    # "db": what commands open (--db, else the file's); "db_option": --db alone.
    ctx.obj = {
        "db": db or settings.get("db"),
        "db_option": db,
        "config": settings,
        "connect_timeout": connect_timeout,
    }


class BadSettings(click.ClickException):
    """A setting of the wrong type or out of range: one line, exit status 2, nothing started."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        """Print ``zasync: error: MESSAGE`` on standard error."""
        click.echo(f"zasync: error: {self.format_message()}", err=True, file=file)


_AGENT_OPTIONS = (("threads", "threads"), ("prefetch", "prefetch"), ("filter", "filter_name"))


def _label(ctx: click.Context, name: str) -> str:
    """How the user gave option ``name``: ``--flag``, or ``$VARIABLE`` from the environment."""
    param = next(p for p in ctx.command.params if p.name == name)
    if ctx.get_parameter_source(name) == click.core.ParameterSource.ENVIRONMENT:
        envvar = param.envvar or f"{ctx.auto_envvar_prefix}_{name.upper()}"
        return f"${envvar if isinstance(envvar, str) else envvar[0]}"
    return param.opts[0]


# -- worker ------------------------------------------------------------------------


@main.command()
@click.option("--config", type=click.Path(exists=True, dir_okay=False), help="A worker TOML file.")
@click.option(
    "--threads",
    metavar="N",
    default=None,
    show_envvar=True,
    help="Threads of the default agent, 1 to 1000 (default 4).",
)
@click.option(
    "--prefetch",
    metavar="N",
    default=None,
    show_envvar=True,
    help="Jobs claimed ahead per agent, 0 to 10000 (default 4 x threads).",
)
@click.option(
    "--agent",
    "agent_texts",
    multiple=True,
    metavar="QUEUE/NAME:THREADS+PREFETCH",
    help="An agent to run (repeatable), e.g. reports/main:2+0. Replaces the default agent.",
)
@click.option(
    "--filter",
    "filter_name",
    default=None,
    help="Dotted name of a job filter for the default agent.",
)
@click.option(
    "--poll-interval",
    metavar="SECONDS",
    default=None,
    show_envvar=True,
    help="Seconds between polls when nothing wakes the worker (default 5).",
)
@click.option(
    "--grace",
    metavar="SECONDS",
    default=None,
    show_envvar=True,
    help="Seconds running jobs get to finish on a stop (default 30).",
)
@click.option(
    "--ping-interval",
    metavar="SECONDS",
    default=None,
    show_envvar=True,
    help="Seconds between pings (default 30).",
)
@click.option(
    "--death-interval",
    metavar="SECONDS",
    default=None,
    show_envvar=True,
    help="Seconds without a ping after which a worker counts as dead (default 60).",
)
@click.option(
    "--uuid",
    "uuid_text",
    envvar="ZASYNC_UUID",
    show_envvar=True,
    default=None,
    help="This worker's UUID (default: kept beside an embedded file, else new).",
)
@click.option(
    "--no-serve", is_flag=True, help="Do not share an embedded file with other processes."
)
@click.option("--burst", is_flag=True, help="Stop when no job is due (batch runs, tests).")
@click.option(
    "--http-port",
    metavar="PORT",
    default=None,
    show_envvar=True,
    help="Serve /metrics and the live view (zasync live) on 127.0.0.1:PORT.",
)
@click.pass_context
def worker(
    ctx: click.Context,
    config: str | None,
    threads: str | None,
    prefetch: str | None,
    agent_texts: tuple[str, ...],
    filter_name: str | None,
    poll_interval: str | None,
    ping_interval: str | None,
    death_interval: str | None,
    grace: str | None,
    uuid_text: str | None,
    no_serve: bool,
    burst: bool,
    http_port: str | None,
) -> None:
    """Run a worker: claim and run jobs until stopped (SIGTERM/SIGINT; twice: at once).

    Every setting is checked (zasync.runtime.settings) before the database opens.
    """
    obj = ctx.obj
    try:
        # --db, then this command's --config, then the one given to zasync itself.
        settings = load_config(config) if config else dict(obj["config"])
        if obj["db_option"]:
            settings["db"] = obj["db_option"]
        elif "db" not in settings and obj["db"]:
            settings["db"] = obj["db"]
        if agent_texts:
            settings["agents"] = agents_from_options(agent_texts)
        elif threads is not None or prefetch is not None or filter_name or "agents" not in settings:
            entry: dict[str, Any] = {"threads": "4" if threads is None else threads}
            if prefetch is not None:
                entry["prefetch"] = prefetch
            if filter_name:
                entry["filter"] = filter_name
            labels = {name: _label(ctx, option) for name, option in _AGENT_OPTIONS}
            settings["agents"] = [agent_from_config(entry, "options", labels)]
        flags = {
            name: (value, _label(ctx, option))
            for name, option, value in (
                ("poll_interval", "poll_interval", poll_interval),
                ("ping_interval", "ping_interval", ping_interval),
                ("death_interval", "death_interval", death_interval),
                ("grace", "grace", grace),
                ("uuid", "uuid_text", uuid_text),
                ("http_port", "http_port", http_port),
            )
            if value is not None
        }
        settings.update(flag_options(flags))
        if no_serve:
            settings["serve"] = False
        settings["burst"] = burst
        options = worker_options(settings)
    except SettingsError as e:
        raise BadSettings(str(e)) from None
    if options.http_port is not None:
        # Before the database opens: a port in use changes nothing.
        check_port("127.0.0.1", options.http_port, "--http-port")
    sys.exit(
        run_worker(options, connect_timeout=obj["connect_timeout"], http_server=start_worker_view)
    )


# -- put ---------------------------------------------------------------------------


def _value(text: str) -> Any:
    """A command-line argument: JSON if it parses (42, 1.5, true, [1,2]), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


@main.command()
@click.argument("callable_name", metavar="DOTTED.NAME")
@click.argument("args", nargs=-1)
@click.option(
    "--kw", "kwargs", multiple=True, metavar="NAME=VALUE", help="A keyword argument (repeatable)."
)
@click.option("--queue", "queue_name", default="", show_default=True, help="Queue name.")
@click.option("--begin-after", default=None, help="ISO time with zone, or a delay such as 10m.")
@click.option("--begin-by", default=None, help="Start deadline after begin-after, e.g. 1h.")
@click.option("--quota", "quotas", multiple=True, help="Quota name (repeatable).")
@click.option(
    "--failure-log-level", default=None, help="Log level for a failure: ERROR, CRITICAL, 40..."
)
@click.option(
    "--retry-policy", default=None, help="A registered policy name, or a dotted factory name."
)
@click.option("--wait", is_flag=True, help="Wait for the result, with a progress bar.")
@click.option(
    "--timeout",
    type=Seconds(0, 366 * 86400),
    default=None,
    help="With --wait: give up after this many seconds.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def put(
    obj: dict[str, Any],
    callable_name: str,
    args: tuple[str, ...],
    kwargs: tuple[str, ...],
    queue_name: str,
    begin_after: str | None,
    begin_by: str | None,
    quotas: tuple[str, ...],
    failure_log_level: str | None,
    retry_policy: str | None,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Put a job calling DOTTED.NAME(ARGS...) in a queue.

    ARGS are JSON values where they parse (42, "text", [1, 2]) and strings
    otherwise.  Example: zasync put operator.mul 6 7 --wait
    """
    try:
        target = resolve(callable_name)
        keyword_args = {}
        for item in kwargs:
            name, sep, value = item.partition("=")
            if not sep or not name:
                fail(f"bad --kw {item!r}: use NAME=VALUE")
            keyword_args[name] = _value(value)
        options: dict[str, Any] = {}
        if begin_after:
            options["begin_after"] = parse_time(begin_after)
        if begin_by:
            options["begin_by"] = parse_duration(begin_by)
        if quotas:
            options["quota_names"] = quotas
        if failure_log_level:
            level = logging.getLevelName(failure_log_level.upper())
            options["failure_log_level"] = (
                int(failure_log_level) if failure_log_level.isdigit() else level
            )
            if not isinstance(options["failure_log_level"], int) or not (
                0 < options["failure_log_level"] <= 100
            ):
                fail(
                    f"unknown log level {failure_log_level!r} "
                    "(DEBUG, INFO, WARNING, ERROR, CRITICAL, or a number from 1 to 100)"
                )
        if retry_policy:
            options["retry_policy_factory"] = (
                resolve(retry_policy)
                if ":" in retry_policy or "." in retry_policy
                else retry_policy
            )
    except (ZasyncError, ValueError) as e:
        fail(str(e))
    with database(obj) as db:
        conn = db.open()
        try:
            queue = get_queue(conn, queue_name)
            _check_quotas(queue, quotas)
            job = queue.put(Job(target, *[_value(a) for a in args], **keyword_args), **options)
            transaction.commit()
        except (LookupError, ValueError, TypeError, ZasyncError) as e:
            transaction.abort()
            conn.close()
            fail(_message(e))
        oid = int.from_bytes(job._p_oid, "big")
        if not wait:
            if as_json:
                click.echo(json.dumps({"oid": oid, "queue": queue_name, "status": str(job.status)}))
            else:
                click.echo(f"put job {oid} in queue {queue_name!r}: {job!r}")
            conn.close()
            return
        outcome = _wait_with_progress(job, timeout, quiet=as_json)
        conn.close()
    if as_json:
        click.echo(json.dumps(outcome, default=str))
    elif outcome["status"] != COMPLETED:
        fail(f"job {oid} is still {outcome['status']} after {timeout} s")
    elif outcome["failed"]:
        click.echo(outcome["traceback"], err=True)
        sys.exit(1)
    else:
        click.echo(outcome["result"])
    if outcome.get("failed"):
        sys.exit(1)


def _check_quotas(queue: Any, names: tuple[str, ...]) -> None:
    known = list(queue.quotas.keys())
    for name in names:
        if name not in known:
            fail(
                f"no quota named {name!r} in queue {queue.name!r}; known quotas: "
                + (", ".join(repr(k) for k in known) if known else "none")
                + " (quotas are made in Python: queue.quotas.create(name, size))"
            )


def _message(error: BaseException) -> str:
    """A refusal's text: a LookupError's message without the quotes KeyError adds."""
    if isinstance(error, LookupError) and len(error.args) == 1:
        return str(error.args[0])
    if len(error.args) > 1:
        return ": ".join(str(a) for a in error.args)
    return str(error)


def _wait_with_progress(job: Any, timeout: float | None, quiet: bool) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = None if timeout is None else time.monotonic() + timeout
    with Progress(
        TextColumn("[bold]job {task.fields[oid]}[/bold] {task.description}"),
        BarColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        disable=quiet,
        transient=False,
    ) as bar:
        task = bar.add_task("pending", total=None, oid=int.from_bytes(job._p_oid, "big"), counts="")
        while True:
            transaction.begin()
            status = job.status
            progress = job.get_annotation(PROGRESS)
            if progress:
                done, total = progress.get("done") or 0, progress.get("total")
                bar.update(
                    task,
                    completed=done,
                    total=total,
                    description=progress.get("message") or str(status),
                    counts=f"{done:g}/{total:g}" if total else f"{done:g}",
                )
            else:
                bar.update(task, description=str(status))
            if status == COMPLETED:
                break
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.1)
    return _describe(job)


def _describe(job: Any) -> dict[str, Any]:
    from zasync.model.failure import Failure

    result = job.result
    failed = isinstance(result, Failure)
    described: dict[str, Any] = {
        "oid": int.from_bytes(job._p_oid, "big"),
        "status": str(job.status),
        "call": repr(job),
        "failed": failed,
        "result": None if failed else _jsonable(result),
    }
    if failed:
        described["error"] = str(result)
        described["traceback"] = result.getTraceback()
    return described


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


# -- status ------------------------------------------------------------------------


def _status_data(conn: Any) -> dict[str, Any]:
    now = clock.utcnow()
    data: dict[str, Any] = {"time": now.isoformat(), "queues": []}
    for name, queue in get_queues(conn).items():
        entry: dict[str, Any] = {
            "name": name,
            "pending": len(queue),
            "quotas": {q.name: {"size": q.size, "used": len(q)} for q in queue.quotas.values()},
            "dispatchers": [],
        }
        for uuid_, da in queue.dispatchers.items():
            entry["dispatchers"].append(
                {
                    "uuid": str(uuid_),
                    "activated": da.activated.isoformat() if da.activated else None,
                    "last_ping": da.last_ping.value.isoformat() if da.last_ping.value else None,
                    "dead": da.dead,
                    "agents": [
                        {
                            "name": agent_name,
                            "size": agent.size,
                            "threads": agent.threads,
                            "held": len(agent),
                            "waiting": len(agent.parked()),
                            "completed": len(agent.completed),
                        }
                        for agent_name, agent in da.items()
                    ],
                }
            )
        data["queues"].append(entry)
    return data


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(obj: dict[str, Any], as_json: bool) -> None:
    """Show queues, their pending jobs, workers and agents."""
    from rich.console import Console
    from rich.table import Table

    with database(obj) as db:
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        try:
            data = _status_data(conn)
        finally:
            tm.abort()
            conn.close()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = Console()
    console.print(f"database: {redact(obj['db'] or default_uri())}", soft_wrap=True)
    table = Table(
        "queue", "pending", "worker", "state", "agent", "threads", "held", "waiting", "done"
    )
    for q in data["queues"]:
        if not q["dispatchers"]:
            table.add_row(repr(q["name"]), str(q["pending"]), "-", "", "", "", "", "", "")
        for i, d in enumerate(q["dispatchers"]):
            state = (
                "dead"
                if d["dead"] and d["activated"]
                else ("active" if d["activated"] else "stopped")
            )
            for j, a in enumerate(d["agents"] or [None]):
                first = i == 0 and j == 0
                table.add_row(
                    repr(q["name"]) if first else "",
                    str(q["pending"]) if first else "",
                    d["uuid"][:8] if j == 0 else "",
                    state if j == 0 else "",
                    a["name"] if a else "",
                    str(a["threads"]) if a else "",
                    str(a["held"]) if a else "",
                    str(a["waiting"]) if a else "",
                    str(a["completed"]) if a else "",
                )
    console.print(table)


from zasync.cli.ops import register as _register_ops  # noqa: E402

_register_ops(main)
