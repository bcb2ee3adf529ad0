"""``zasync put``: put a job from the command line, and optionally wait for its result."""

from __future__ import annotations

import builtins
import json
import logging
import sys
import time
from typing import Any

import click
import transaction

from zasync.cli._common import (
    Seconds,
    database,
    fail,
)
from zasync.interfaces import COMPLETED, ZasyncError
from zasync.model.backoff import Retry
from zasync.model.broadcast import broadcast as zasync_broadcast
from zasync.model.job import Job
from zasync.model.queue import get_queue
from zasync.ops.durations import parse_duration, parse_time
from zasync.ops.views import get_job
from zasync.runtime.worker import resolve
from zasync.schema import PROGRESS


def _value(text: str) -> Any:
    """A command-line argument: JSON if it parses (42, 1.5, true, [1,2]), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _declared_retry(
    attempts: int | None, on: tuple[str, ...], backoff: float | None, max_backoff: float | None
) -> Retry | None:
    """The Retry that --retry and its companions declare; None without --retry."""
    if attempts is None:
        if on or backoff is not None or max_backoff is not None:
            fail("--retry-on, --backoff and --max-backoff go with --retry ATTEMPTS")
        return None
    options: dict[str, Any] = {"attempts": attempts}
    if on:
        options["on"] = tuple(_exception_class(name) for name in on)
    if backoff is not None:
        options["backoff"] = backoff
    if max_backoff is not None:
        options["max_backoff"] = max_backoff
    return Retry(**options)


def _exception_class(name: str) -> type[BaseException]:
    """The exception class a --retry-on names (``OSError``, ``myapp.errors.Busy``)."""
    found = getattr(builtins, name, None) if "." not in name and ":" not in name else resolve(name)
    if not (isinstance(found, type) and issubclass(found, BaseException)):
        fail(f"--retry-on {name!r} is not an exception class")
    return found


@click.command()
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
@click.option(
    "--retry",
    "attempts",
    type=click.IntRange(1, 1000),
    default=None,
    help="Attempts in all, retried with backoff (a declared Retry).",
)
@click.option(
    "--retry-on",
    multiple=True,
    metavar="EXCEPTION",
    help="With --retry: retry only this exception (dotted name, repeatable); default Exception.",
)
@click.option(
    "--backoff",
    type=Seconds(0, 366 * 86400),
    default=None,
    help="With --retry: seconds before the second attempt, doubling after (default 1).",
)
@click.option(
    "--max-backoff",
    type=Seconds(0, 366 * 86400),
    default=None,
    help="With --retry: the longest wait between attempts (default 3600).",
)
@click.option(
    "--unique-key",
    default=None,
    metavar="KEY",
    help="Add nothing if a job of the queue holds this key; print that job.",
)
@click.option(
    "--unique-until",
    type=click.Choice(["started", "finished"]),
    default=None,
    help="With --unique-key: the job holds its key until it starts (default) or finishes.",
)
@click.option(
    "--priority",
    type=click.IntRange(-100, 100),
    default=None,
    help="Higher is claimed first among due jobs (-100 to 100, default 0).",
)
@click.option(
    "--rate-limit",
    "rate_limits",
    multiple=True,
    metavar="NAME",
    help="A rate limit of the queue it counts against (repeatable).",
)
@click.option(
    "--after",
    multiple=True,
    metavar="JOB_ID",
    help="Run only once this job has finished (repeatable).",
)
@click.option(
    "--on-dependency-failure",
    type=click.Choice(["fail", "run"]),
    default="fail",
    show_default=True,
    help="With --after: what a dependency that did not succeed does.",
)
@click.option(
    "--job-timeout",
    default=None,
    metavar="DURATION",
    help="The longest the job may run (90s, 5m, 1h); past it, it fails with TimeLimitError "
    "and nothing it changed is committed.",
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
    attempts: int | None,
    retry_on: tuple[str, ...],
    backoff: float | None,
    max_backoff: float | None,
    unique_key: str | None,
    unique_until: str | None,
    priority: int | None,
    rate_limits: tuple[str, ...],
    after: tuple[str, ...],
    on_dependency_failure: str,
    job_timeout: str | None,
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
        declared = _declared_retry(attempts, retry_on, backoff, max_backoff)
        if declared is not None:
            if retry_policy:
                fail("give --retry or --retry-policy, not both")
            options["retry"] = declared
        if priority is not None:
            options["priority"] = priority
        if job_timeout is not None:
            options["timeout"] = parse_duration(job_timeout)
        if rate_limits:
            options["rate_limits"] = rate_limits
        if unique_key is not None or unique_until is not None:
            options.update(unique_key=unique_key, unique_until=unique_until)
    except (ZasyncError, ValueError) as e:
        fail(str(e))
    with database(obj) as db:
        conn = db.open()
        try:
            queue = get_queue(conn, queue_name)
            _check_quotas(queue, quotas)
            made = Job(target, *[_value(a) for a in args], **keyword_args)
            if after:
                options["after"] = [get_job(conn, ident) for ident in after]
                options["on_dependency_failure"] = on_dependency_failure
            job = queue.put(made, **options)
            transaction.commit()
        except (LookupError, ValueError, TypeError, ZasyncError) as e:
            transaction.abort()
            conn.close()
            fail(_message(e))
        oid = int.from_bytes(job._p_oid, "big")
        if not wait:
            added = job is made
            if as_json:
                click.echo(json.dumps({"oid": oid, "queue": queue_name,
                                       "status": str(job.status), "added": added}))  # fmt: skip
            elif added:
                click.echo(f"put job {oid} in queue {queue_name!r}: {job!r}")
            else:
                click.echo(f"job {oid} holds key {unique_key!r} in queue {queue_name!r}; "
                           f"nothing added: {job!r}")  # fmt: skip
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


@click.command()
@click.argument("callable_name", metavar="DOTTED.NAME")
@click.argument("args", nargs=-1)
@click.option("--queue", "queue_name", default="", show_default=True, help="Queue name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def broadcast(
    obj: dict[str, Any], callable_name: str, args: tuple[str, ...], queue_name: str, as_json: bool
) -> None:
    """Run DOTTED.NAME(ARGS...) once on every live worker of a queue.

    Prints the id of the collector job, whose result (``zasync job ID``) maps
    each worker to what its copy returned.
    """
    try:
        target = resolve(callable_name)
    except ZasyncError as e:
        fail(str(e))
    with database(obj) as db:
        conn = db.open()
        try:
            collector = zasync_broadcast(
                get_queue(conn, queue_name), target, *[_value(a) for a in args]
            )
            transaction.commit()
        except (LookupError, ValueError, TypeError, ZasyncError) as e:
            transaction.abort()
            conn.close()
            fail(_message(e))
        ident = int.from_bytes(collector._p_oid, "big")
        copies = len(collector._after[0]) if collector._after else 0
        conn.close()
    if as_json:
        click.echo(json.dumps({"collector": ident, "workers": copies, "queue": queue_name}))
    else:
        click.echo(f"broadcast to {copies} workers; their results: zasync job {ident}")
