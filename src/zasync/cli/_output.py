"""What the read and act commands share: running a query or an action, printing results."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from zasync.cli._common import CliError, database
from zasync.interfaces import ZasyncError
from zasync.model.tx import read_in_fresh_connection
from zasync.ops import queries, views
from zasync.storage.database import one_line

F = TypeVar("F", bound=Callable[..., Any])
ERRORS = (ZasyncError, LookupError, ValueError)


def read(obj: dict[str, Any], query: Callable[[Any], Any]) -> Any:
    """Run ``query(conn)`` on a fresh connection; errors become one-line CLI errors."""
    with database(obj) as db:
        try:
            return read_in_fresh_connection(db, query)
        except ERRORS as e:
            raise CliError(one_line(_message(e))) from e


def act(obj: dict[str, Any], action: Callable[[Any], Any]) -> Any:
    with database(obj) as db:
        try:
            return action(db)
        except ERRORS as e:
            raise CliError(one_line(_message(e))) from e


def _message(error: BaseException) -> str:
    if isinstance(error, KeyError | LookupError) and error.args:
        return str(error.args[0])
    return str(error)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    # Piped output (scripts, grep) gets full lines rather than 80 columns.
    Console(width=None if sys.stdout.isatty() else 240).print(table)


def filter_options(func: F) -> F:
    options = [
        click.option(
            "--state",
            "states",
            multiple=True,
            metavar="STATE",
            help="Keep jobs in this state (repeatable): " + ", ".join(views.STATES) + ".",
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


def make_filter(
    states: tuple[str, ...],
    callable_glob: str | None,
    since: str | None,
    before: str | None,
    queue_name: str | None,
) -> queries.JobFilter:
    try:
        return queries.make_filter(states, callable_glob, since, before, queue_name)
    except ValueError as e:
        raise click.UsageError(str(e)) from None


def job_rows(jobs: list[dict[str, Any]]) -> list[list[Any]]:
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


def done(data: dict[str, Any], as_json: bool, text: str) -> None:
    """Say what an action did: ``text``, or ``data`` as JSON."""
    click.echo(json.dumps(data) if as_json else text)
