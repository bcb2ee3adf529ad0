"""The ``zasync`` command line: ``worker``, ``put``, ``status``, and the operations commands.

One module per family of commands: :mod:`~zasync.cli.worker`,
:mod:`~zasync.cli.put`, :mod:`~zasync.cli.read` (``status``, ``jobs``, ``job``,
...), :mod:`~zasync.cli.act` (``retry``, ``cancel``, ``quota``, ``purge``, ...)
and :mod:`~zasync.cli.serve` (``web``, ``live``).

Every option can also come from the ``ZASYNC_*`` environment variable shown
in ``--help``.  Read commands accept ``--json``.

Errors reach the user as one line, ``zasync: error: <what>`` (exit status 2
for a bad command line, 1 otherwise; ``zasync -v`` adds the traceback): see
:mod:`zasync.cli._common`.  Only ``worker`` creates a database; the other
commands say so when there is none.
"""

from __future__ import annotations

import logging
import sys

import click

from zasync.cli import act, put, read, schedule, serve, worker
from zasync.cli._common import CONNECT_TIMEOUT, BadSettings, Seconds, ZasyncGroup
from zasync.runtime.settings import SettingsError, load_config


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


for _command in (
    worker.worker,
    put.put,
    put.broadcast,
    read.status,
    read.jobs,
    read.count,
    read.job,
    read.traceback,
    read.jobstats,
    read.lastcompleted,
    read.nextpending,
    read.dispatchers,
    read.uuids,
    read.utcnow,
    act.retry,
    act.remove,
    act.cancel,
    act.queue,
    act.quota,
    act.ratelimit,
    act.agent,
    act.purge,
    schedule.schedule,
    serve.web,
    serve.live,
):
    main.add_command(_command)

__all__ = ["main"]
