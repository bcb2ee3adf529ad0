"""``zasync schedule``: periodic jobs from the command line (add, list, pause, resume, remove, run).

Each command says what it did (JSON with ``--json``); an unknown queue or
schedule, or a bad cron expression, interval or time zone, exits with
status 1, one line saying why, and changes nothing.
"""

from __future__ import annotations

from typing import Any

import click

from zasync.cli import _output as out
from zasync.cli._common import fail
from zasync.cli.put import _value
from zasync.ops import schedules
from zasync.ops.durations import parse_duration
from zasync.runtime.worker import resolve

QUEUE = click.option("--queue", "queue_name", default="", show_default=True, help="Queue name.")
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
def schedule() -> None:
    """Periodic jobs: schedules whose every tick puts exactly one job."""


@schedule.command("add")
@click.argument("name")
@click.argument("callable_name", metavar="DOTTED.NAME")
@click.argument("args", nargs=-1)
@click.option("--cron", default=None, help="A cron expression: '0 9 * * 1-5'.")
@click.option("--every", default=None, help="An interval instead: 30s, 5m, 1h (at least 1s).")
@click.option("--tz", "timezone", default="UTC", show_default=True, help="The cron's time zone.")
@click.option(
    "--missed",
    type=click.Choice(["once", "each", "skip"]),
    default="once",
    show_default=True,
    help="Ticks no worker fired: one job for all, one each, or none.",
)
@click.option(
    "--grace",
    type=float,
    default=60.0,
    show_default=True,
    help="With skip: seconds late still run.",
)
@click.option("--priority", type=click.IntRange(-100, 100), default=None, help="Of its jobs.")
@click.option("--retry", "attempts", type=click.IntRange(1, 1000), default=None, help="Attempts.")
@click.option(
    "--job-timeout", default=None, metavar="DURATION", help="The longest each job may run."
)
@QUEUE
@JSON
@click.pass_obj
def schedule_add(
    obj: dict[str, Any],
    name: str,
    callable_name: str,
    args: tuple[str, ...],
    cron: str | None,
    every: str | None,
    timezone: str,
    missed: str,
    grace: float,
    priority: int | None,
    attempts: int | None,
    job_timeout: str | None,
    queue_name: str,
    as_json: bool,
) -> None:
    """Add schedule NAME calling DOTTED.NAME(ARGS...) at each tick of --cron or --every.

    Example: zasync schedule add nightly myapp.reports.nightly --cron '30 2 * * *'
    --tz Europe/Paris
    """
    try:
        target = resolve(callable_name)
        interval = None if every is None else parse_duration(every).total_seconds()
        limit = None if job_timeout is None else parse_duration(job_timeout).total_seconds()
    except ValueError as e:
        fail(str(e))
    options: dict[str, Any] = {
        "cron": cron,
        "every": interval,
        "timezone": timezone,
        "missed": missed,
        "grace": grace,
    }
    if priority is not None:
        options["priority"] = priority
    if attempts is not None:
        options["retry"] = attempts
    if limit is not None:
        options["timeout"] = limit
    done = out.act(
        obj,
        lambda db: schedules.add(
            db, queue_name, name, target, tuple(_value(a) for a in args), **options
        ),
    )
    out.done(done, as_json, f"schedule {name!r} added: {done['when']}; next run {done['next_run']}")


@schedule.command("list")
@click.option("--queue", "queue_name", default=None, help="Only this queue.")
@JSON
@click.pass_obj
def schedule_list(obj: dict[str, Any], queue_name: str | None, as_json: bool) -> None:
    """List the schedules: when they run, their next run, their last job."""
    found = out.read(obj, lambda conn: schedules.list_schedules(conn, queue_name))
    if as_json:
        out.print_json(found)
        return
    rows = [
        [
            s["queue"],
            s["name"],
            s["callable"],
            s["when"],
            "paused" if s["paused"] else s["next_run"],
            s["runs"],
            s["last_job"] and f"{s['last_job']} {s['last_outcome'] or s['last_status']}",
        ]
        for s in found
    ]
    out.table(["queue", "name", "callable", "when", "next run", "runs", "last job"], rows)


def _one(action: Any, verb: str) -> Any:
    @click.argument("name")
    @QUEUE
    @JSON
    @click.pass_obj
    def command(obj: dict[str, Any], name: str, queue_name: str, as_json: bool) -> None:
        done = out.act(obj, lambda db: action(db, queue_name, name))
        out.done(done, as_json, verb.format(**{**done, "name": name}))

    return command


schedule.command("pause", help="Let a schedule's ticks pass without putting jobs.")(
    _one(schedules.pause, "schedule {name!r} paused (was it running: {changed})")
)
schedule.command("resume", help="Let a paused schedule put jobs again from its next tick.")(
    _one(schedules.resume, "schedule {name!r} resumed (was it paused: {changed}); next {next_run}")
)
schedule.command("remove", help="Forget a schedule; the jobs it put stay.")(
    _one(schedules.remove, "schedule {name!r} removed after {runs} runs")
)
schedule.command("run", help="Put one job of a schedule now; its ticks go on as before.")(
    _one(schedules.run_now, "schedule {name!r} put job {id}")
)
