"""``zasync worker``: run a worker with settings from a TOML file, flags and the environment."""

from __future__ import annotations

import sys
from typing import Any

import click

from zasync.cli._common import BadSettings, check_port
from zasync.ops.live import start_worker_view
from zasync.runtime.settings import (
    SettingsError,
    agent_from_config,
    agents_from_options,
    flag_options,
    load_config,
    worker_options,
)
from zasync.runtime.worker import run_worker

_AGENT_OPTIONS = (
    ("threads", "threads"),
    ("prefetch", "prefetch"),
    ("filter", "filter_name"),
    ("batch", "batch"),
    ("timeout", "timeout"),
)


def _label(ctx: click.Context, name: str) -> str:
    """How the user gave option ``name``: ``--flag``, or ``$VARIABLE`` from the environment."""
    param = next(p for p in ctx.command.params if p.name == name)
    if ctx.get_parameter_source(name) == click.core.ParameterSource.ENVIRONMENT:
        envvar = param.envvar or f"{ctx.auto_envvar_prefix}_{name.upper()}"
        return f"${envvar if isinstance(envvar, str) else envvar[0]}"
    return param.opts[0]


# -- worker ------------------------------------------------------------------------


@click.command()
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
    help="Jobs claimed ahead per agent, 0 to 10000 (default threads x max(4, batch)).",
)
@click.option(
    "--batch",
    metavar="N",
    default=None,
    show_envvar=True,
    help="Jobs a thread runs in one transaction, 1 to 1000 (default 1: each commits alone). "
    "Opt-in: a batch's results are stored together, and a failed batch commit runs its "
    "jobs again one by one.",
)
@click.option(
    "--timeout",
    metavar="SECONDS",
    default=None,
    show_envvar=True,
    help="Time limit of the default agent's jobs put without one (default: none). "
    "A job past it fails with TimeLimitError; nothing it changed is committed.",
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
    batch: str | None,
    timeout: str | None,
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
        elif (
            threads is not None
            or prefetch is not None
            or batch is not None
            or timeout is not None
            or filter_name
            or "agents" not in settings
        ):
            entry: dict[str, Any] = {"threads": "4" if threads is None else threads}
            if prefetch is not None:
                entry["prefetch"] = prefetch
            if batch is not None:
                entry["batch"] = batch
            if timeout is not None:
                entry["timeout"] = timeout
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
