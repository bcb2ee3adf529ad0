"""The commands that read what the database holds: ``status``, ``jobs``, ``job``, counts, workers.

Each prints a table or text, and JSON with ``--json``; none changes anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from zasync import clock
from zasync.cli import _output as out
from zasync.cli._common import database
from zasync.model.queue import get_queues
from zasync.model.tx import read_in_fresh_connection
from zasync.ops import queries, views
from zasync.storage.database import default_uri, redact


@click.command()
@out.filter_options
@click.option("--limit", type=click.IntRange(0), default=50, show_default=True,
              help="At most this many jobs (0: all).")  # fmt: skip
@click.pass_obj
def jobs(obj: dict[str, Any], /, limit: int, as_json: bool, **filters: Any) -> None:
    """List jobs: running, pending, then finished (newest first), with filters.

    Example: zasync jobs --state failed --since 1h --callable 'myapp.*'
    """
    chosen = out.make_filter(**filters)
    found = out.read(obj, lambda c: queries.list_jobs(c, chosen, limit or None))
    if as_json:
        out.print_json(found)
    else:
        out.table(out.JOB_COLUMNS, out.job_rows(found))


@click.command()
@out.filter_options
@click.pass_obj
def count(obj: dict[str, Any], /, as_json: bool, **filters: Any) -> None:
    """Count the jobs that the filters keep.  Example: zasync count --state pending"""
    chosen = out.make_filter(**filters)
    number = out.read(obj, lambda c: queries.count_jobs(c, chosen))
    click.echo(json.dumps({"count": number}) if as_json else str(number))


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def job(obj: dict[str, Any], job_id: str, as_json: bool) -> None:
    """Show one job: call, arguments, times, result or traceback, progress, callbacks."""
    info = out.read(obj, lambda c: views.job_info(c, job_id))
    if as_json:
        out.print_json(info)
        return
    for key in ("id", "queue", "status", "outcome", "callable", "call", "dispatcher",
                "agent", "begin_after", "active_start", "active_end", "duration",
                "quota_names", "priority", "timeout", "unique_key", "progress", "cancel_request",
                "retry_of", "retried_as", "error"):  # fmt: skip
        if info.get(key) not in (None, [], "") and not (key == "priority" and info[key] == 0):
            click.echo(f"{key + ':':15} {info[key]}")
    if info["result"] is not None:
        click.echo(f"{'result:':15} {info['result']!r}")
    for step in info["history"]:
        click.echo(f"{'history:':15} {step['at']} {step['status']}")
    if len(info["attempts"]) > 1 or info["dead_letter"]:
        for attempt in info["attempts"]:
            error = f" {attempt['error']}" if attempt["error"] else ""
            click.echo(
                f"{'attempt:':15} {attempt['number']} {attempt['start'] or '?'} to "
                f"{attempt['end'] or '...'} {attempt['outcome']}{error}"
            )
    for key, label in (("waits_for", "runs after:"), ("needed_by", "needed by:")):
        for node in info[key]:
            state = node["status"] + (f" ({node['outcome']})" if node["outcome"] else "")
            click.echo(f"{label:15} {node['id']} {node['callable']} {state}")
    if info["unmet"]:
        click.echo(f"{'will fail:':15} {info['unmet']}")
    if info["dead_letter"]:
        click.echo(f"{'dead letter:':15} failed after its last attempt; zasync retry {info['id']}")

    def tree(nodes: list[dict[str, Any]], depth: int) -> None:
        for node in nodes:
            state = node["status"] + (f" ({node['outcome']})" if node["outcome"] else "")
            click.echo(f"{'callback:':15} {'  ' * depth}{node['id']} {node['callable']} {state}")
            tree(node["callbacks"], depth + 1)

    tree(info["callbacks"], 0)
    if info["traceback"]:
        click.echo(info["traceback"])


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def traceback(obj: dict[str, Any], job_id: str, as_json: bool) -> None:
    """Print the traceback of a failed job."""
    text = out.read(obj, lambda c: views.traceback(c, job_id))
    click.echo(json.dumps({"id": int(views.parse_job_id(job_id)), "traceback": text})
               if as_json else text.rstrip())  # fmt: skip


@click.command()
@out.filter_options
@click.pass_obj
def jobstats(obj: dict[str, Any], /, as_json: bool, **filters: Any) -> None:
    """Counts by state, and the shortest, longest and mean durations of kept jobs."""
    chosen = out.make_filter(**filters)
    stats = out.read(obj, lambda c: queries.job_stats(c, chosen))
    if as_json:
        out.print_json(stats)
        return
    out.table(["state", "jobs"], [[k, v] for k, v in stats["counts"].items()])
    rows = [
        [
            kind,
            d["shortest"] and f"{d['shortest']['seconds']:.3f}s (job {d['shortest']['id']})",
            d["longest"] and f"{d['longest']['seconds']:.3f}s (job {d['longest']['id']})",
            d["mean"] is not None and f"{d['mean']:.3f}s",
        ]
        for kind, d in stats["durations"].items()
    ]
    out.table(["kind", "shortest", "longest", "mean"], rows)


def _one_job(name: str, query: Callable[[Any, queries.JobFilter], Any], doc: str) -> click.Command:
    """A command that shows the one job ``query`` finds, or 'none'."""

    @out.filter_options
    @click.pass_obj
    def command(obj: dict[str, Any], /, as_json: bool, **filters: Any) -> None:
        chosen = out.make_filter(**filters)
        found = out.read(obj, lambda c: query(c, chosen))
        if as_json:
            out.print_json(found)
        elif found is None:
            click.echo("none")
        else:
            out.table(out.JOB_COLUMNS, out.job_rows([found]))

    command.__doc__ = doc
    return click.command(name)(command)


lastcompleted = _one_job(
    "lastcompleted", queries.last_completed, "Show the most recently completed job."
)
nextpending = _one_job(
    "nextpending", queries.next_pending, "Show the pending job that will be claimed next."
)


@click.command()
@click.option("--queue", "queue_name", default=None, help="Only this queue.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def dispatchers(obj: dict[str, Any], queue_name: str | None, as_json: bool) -> None:
    """Workers (dispatchers) by queue: alive/dead/stopped, last ping, agents, running jobs."""
    found = out.read(obj, lambda c: queries.dispatchers(c, queue_name))
    if as_json:
        out.print_json(found)
        return
    rows = []
    for d in found:
        for agent in d["agents"] or [None]:
            rows.append([
                repr(d["queue"]), d["uuid"], state_text(d), d["last_ping"],
                agent and agent["name"], agent and f"{agent['threads']}/{agent['size']}",
                agent and ", ".join(str(j["id"]) for j in agent["jobs"]),
            ])  # fmt: skip
    out.table(["queue", "uuid", "state", "last ping", "agent", "threads/size", "jobs"], rows)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def uuids(obj: dict[str, Any], as_json: bool) -> None:
    """The UUIDs of all registered workers."""
    found = out.read(obj, queries.uuids)
    click.echo(json.dumps(found) if as_json else "\n".join(found))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def utcnow(as_json: bool) -> None:
    """The current UTC time, as zasync sees it."""
    now = clock.utcnow().isoformat()
    click.echo(json.dumps({"utcnow": now}) if as_json else now)


def state_text(dispatcher: dict[str, Any]) -> str:
    """A dispatcher's state, with the worker threads that died, if any did."""
    deaths = dispatcher.get("thread_deaths") or 0
    return f"{dispatcher['state']} ({deaths} thread deaths)" if deaths else dispatcher["state"]


def _status_data(conn: Any) -> dict[str, Any]:
    now = clock.utcnow()
    data: dict[str, Any] = {"time": now.isoformat(), "queues": []}
    for name, queue in get_queues(conn).items():
        entry: dict[str, Any] = {
            "name": name,
            "pending": len(queue) + len(queue.waiting),
            "quotas": {q.name: {"size": q.size, "used": len(q)} for q in queue.quotas.values()},
            **queries.pause_state(queue),
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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(obj: dict[str, Any], as_json: bool) -> None:
    """Show queues, their pending jobs, workers and agents."""
    from rich.console import Console
    from rich.table import Table

    with database(obj) as db:
        data = read_in_fresh_connection(db, _status_data)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = Console()
    console.print(f"database: {redact(obj['db'] or default_uri())}", soft_wrap=True)
    table = Table(
        "queue", "pending", "worker", "state", "agent", "threads", "held", "waiting", "done"
    )
    for q in data["queues"]:
        label = repr(q["name"]) + (" (paused)" if q["paused"] else "")
        if not q["dispatchers"]:
            table.add_row(label, str(q["pending"]), "-", "", "", "", "", "", "")
        for i, d in enumerate(q["dispatchers"]):
            state = (
                "dead"
                if d["dead"] and d["activated"]
                else ("active" if d["activated"] else "stopped")
            )
            for j, a in enumerate(d["agents"] or [None]):
                first = i == 0 and j == 0
                table.add_row(
                    label if first else "",
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
    for q in data["queues"]:
        if q.get("default_timeout"):
            console.print(
                f"queue {q['name']!r}: jobs put without a time limit may run "
                f"{q['default_timeout']:g} s",
                soft_wrap=True,
                markup=False,
            )
        if q["paused"]:
            reason = f": {q['pause_reason']}" if q["pause_reason"] else ""
            console.print(
                f"queue {q['name']!r} is paused since {q['paused_at']}{reason} "
                f"(zasync queue resume {q['name'] or repr('')})",
                soft_wrap=True,
                markup=False,
            )
