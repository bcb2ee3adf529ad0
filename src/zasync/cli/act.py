"""The commands that act on jobs, queues, quotas and agents: ``retry``, ``cancel``, ...

Each says what it did (JSON with ``--json``); an unknown id or a wrong state
exits with status 1, one line saying why, and changes nothing.  ``purge`` says
what it will delete and asks first (``--yes`` skips the question; without a
terminal to ask on, it refuses).
"""

from __future__ import annotations

from typing import Any

import click

from zasync.cli import _output as out
from zasync.cli._common import fail, stdin_is_interactive
from zasync.ops import actions, queries
from zasync.ops.durations import parse_duration


@click.command()
@click.argument("job_id", required=False)
@click.option(
    "--dead-letters",
    is_flag=True,
    help="Retry every dead letter (failed, not yet retried) the filters keep.",
)
@click.option("--queue", "queue_name", default=None, help="With --dead-letters: only this queue.")
@click.option(
    "--callable",
    "callable_glob",
    default=None,
    metavar="GLOB",
    help="With --dead-letters: only jobs whose callable's dotted name matches.",
)
@click.option("--since", default=None, help="With --dead-letters: failed at or after (5m ago).")
@click.option("--before", default=None, help="With --dead-letters: failed before (1h ago).")
@click.option("--yes", "-y", is_flag=True, help="With --dead-letters: do not ask first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def retry(
    obj: dict[str, Any],
    job_id: str | None,
    dead_letters: bool,
    queue_name: str | None,
    callable_glob: str | None,
    since: str | None,
    before: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Put a failed job again: a new job with the same call and options.

    With --dead-letters, do so for every failed job not yet retried (filtered
    by --queue, --callable, --since, --before): says how many and asks first;
    a job already retried is never retried twice.
    """
    if dead_letters == (job_id is not None):
        raise click.UsageError("give a JOB_ID or --dead-letters (one of them)")
    if job_id is not None:
        if queue_name or callable_glob or since or before or yes:
            raise click.UsageError(
                "--queue, --callable, --since, --before and --yes go with --dead-letters"
            )
        done = out.act(obj, lambda db: actions.retry_job(db, job_id))
        out.done(done, as_json, f"job {done['retried']} retried as job {done['id']}")
        return
    chosen = out.make_filter(("dead",), callable_glob, since, before, queue_name)
    found = out.read(obj, lambda conn: queries.count_jobs(conn, chosen))
    if found and not yes:
        plan = f"will retry {found} dead letters"
        if not stdin_is_interactive():
            fail(f"{plan}; refusing without --yes (no terminal to ask on)")
        click.confirm(f"{plan}. Go on?", abort=True, err=True)
    done = out.act(obj, lambda db: actions.retry_dead_letters(db, chosen))
    text = f"retried {len(done['retried'])} dead letters"
    if done["skipped"]:
        text += f"; {len(done['skipped'])} were retried meanwhile"
    for ident, why in done["unretriable"].items():
        text += f"\njob {ident} not retried: {why}"
    out.done(done, as_json, text)


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def remove(obj: dict[str, Any], job_id: str, as_json: bool) -> None:
    """Take a pending job out of its queue (it will never run)."""
    done = out.act(obj, lambda db: actions.remove_job(db, job_id))
    out.done(done, as_json, f"job {done['removed']} removed from queue {done['queue']!r}")


@click.command()
@click.argument("job_id")
@click.option("--reason", default=None, help="Why; stored with the request.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def cancel(obj: dict[str, Any], job_id: str, reason: str | None, as_json: bool) -> None:
    """Cancel a pending job at once, or ask a running job to stop (it decides when)."""
    done = out.act(obj, lambda db: actions.cancel_job(db, job_id, reason))
    text = (
        f"job {done['id']} cancelled"
        if done["outcome"] == "cancelled"
        else f"job {done['id']} is running: asked it to stop"
    )
    out.done(done, as_json, text)


@click.group()
def quota() -> None:
    """Quotas: how many jobs naming them may run at once."""


@quota.command("resize")
@click.argument("name")
@click.argument("size", type=click.IntRange(0))
@click.option("--queue", "queue_name", default="", show_default=True, help="Queue name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def quota_resize(obj: dict[str, Any], name: str, size: int, queue_name: str, as_json: bool) -> None:
    """Change quota NAME's size to SIZE, at once.  Example: zasync quota resize reports 4"""
    done = out.act(obj, lambda db: actions.set_quota_size(db, queue_name, name, size))
    out.done(done, as_json, f"quota {name!r}: size {done['old_size']} -> {size}")


@click.group()
def ratelimit() -> None:
    """Rate limits: at most COUNT starts per period for the jobs that name them."""


@ratelimit.command("set")
@click.argument("name")
@click.argument("count", type=click.IntRange(1, 100_000))
@click.option("--per", default="1s", show_default=True, help="The period: 1s, 500ms, 1m, 1h.")
@click.option("--queue", "queue_name", default="", show_default=True, help="Queue name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def ratelimit_set(
    obj: dict[str, Any], name: str, count: int, per: str, queue_name: str, as_json: bool
) -> None:
    """Create rate limit NAME of COUNT starts per --per, or change it."""
    try:
        seconds = _period(per)
    except ValueError as e:
        raise click.UsageError(f"bad --per: {e}") from None
    done = out.act(obj, lambda db: actions.set_rate_limit(db, queue_name, name, count, seconds))
    verb = "created" if done["created"] else "changed"
    out.done(done, as_json, f"rate limit {name!r} {verb}: {count} per {done['per']:g} s")


def _period(text: str) -> float:
    if text.endswith("ms") and text[:-2].replace(".", "", 1).isdigit():
        return float(text[:-2]) / 1000
    return parse_duration(text).total_seconds()


@ratelimit.command("list")
@click.option("--queue", "queue_name", default=None, help="Only this queue.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def ratelimit_list(obj: dict[str, Any], queue_name: str | None, as_json: bool) -> None:
    """List the rate limits and how many starts each counted in its last period."""
    found = [
        {"queue": q["name"], **limit}
        for q in out.read(obj, queries.queues)
        if queue_name is None or q["name"] == queue_name
        for limit in q["rate_limits"]
    ]
    if as_json:
        out.print_json(found)
        return
    rows = [[r["queue"], r["name"], r["count"], f"{r['per']:g} s", r["used"]] for r in found]
    out.table(["queue", "name", "count", "per", "used now"], rows)


@ratelimit.command("remove")
@click.argument("name")
@click.option("--queue", "queue_name", default="", show_default=True, help="Queue name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def ratelimit_remove(obj: dict[str, Any], name: str, queue_name: str, as_json: bool) -> None:
    """Delete a rate limit; the jobs naming it are no longer limited."""
    done = out.act(obj, lambda db: actions.remove_rate_limit(db, queue_name, name))
    out.done(done, as_json, f"rate limit {name!r} removed")


@click.group()
def queue() -> None:
    """Queues: pause and resume claiming; the default time limit of their jobs."""


@queue.command("pause")
@click.argument("name", default="")
@click.option("--reason", default=None, help="Why (one line, at most 200 characters).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def queue_pause(obj: dict[str, Any], name: str, reason: str | None, as_json: bool) -> None:
    """Stop workers claiming from queue NAME (default ''); running jobs finish.

    Pending jobs stay and puts still add to them.  Example: zasync queue pause --reason deploy
    """
    done = out.act(obj, lambda db: actions.pause_queue(db, name, reason))
    text = (
        f"queue {name!r} paused"
        if done["changed"]
        else f"queue {name!r} was already paused (since {done['paused_at']})"
    )
    out.done(done, as_json, text)


@queue.command("resume")
@click.argument("name", default="")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def queue_resume(obj: dict[str, Any], name: str, as_json: bool) -> None:
    """Let workers claim from queue NAME (default '') again."""
    done = out.act(obj, lambda db: actions.resume_queue(db, name))
    text = f"queue {name!r} resumed" if done["changed"] else f"queue {name!r} was not paused"
    out.done(done, as_json, text)


@queue.command("timeout")
@click.argument("name", default="")
@click.argument("duration")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def queue_timeout(obj: dict[str, Any], name: str, duration: str, as_json: bool) -> None:
    """Set the time limit of queue NAME's jobs put without one (DURATION, or 'none').

    A worker agent's own --timeout comes first.  Example: zasync queue timeout '' 10m
    """
    seconds = None
    if duration.lower() != "none":
        try:
            seconds = parse_duration(duration).total_seconds()
        except ValueError as e:
            fail(str(e))
    done = out.act(obj, lambda db: actions.set_queue_timeout(db, name, seconds))
    limit = done["default_timeout"]
    text = (
        f"queue {name!r}: jobs put without a time limit may run {limit:g} s"
        if limit is not None
        else f"queue {name!r}: no default time limit"
    )
    out.done(done, as_json, text)


@click.group()
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
    done = out.act(
        obj, lambda db: actions.set_agent_size(db, queue_name, worker, name, size, threads)
    )
    out.done(done, as_json,
          f"agent {name!r} of {done['dispatcher']}: size {done['size']}, "
          f"threads {done['threads']}")  # fmt: skip


@click.command()
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
    found = out.act(obj, lambda db: actions.count_purgeable(db, age, queue_name))
    total = sum(found.values())
    if total and not yes:
        plan = f"will delete {total} finished jobs older than {older_than} from {where}"
        if not stdin_is_interactive():
            fail(f"{plan}; refusing without --yes (no terminal to ask on)")
        click.confirm(f"{plan}. Go on?", abort=True, err=True)
    if total:
        done = out.act(obj, lambda db: actions.purge_completed(db, age, queue_name))
    else:
        done = {"purged": found, "older_than": age.total_seconds()}
    total = sum(done["purged"].values())
    out.done(done, as_json, f"purged {total} finished jobs older than {older_than} from {where}")
