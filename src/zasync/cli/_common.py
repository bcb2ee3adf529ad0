"""What every ``zasync`` command shares: one error path, opening the database, checks.

:class:`ZasyncGroup` is the class of the ``zasync`` group.  Every error a
command meets ends there and reaches the user as one line,
``zasync: error: <what>``, with exit status 2 for a bad command line and 1
otherwise; ``zasync -v`` adds the traceback.  Expected errors (ZasyncError,
OSError, ZODB's and the storages' errors) print their message; anything else
prints its class and message, and suggests ``-v``.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

import click
from ZODB.POSException import POSError

from zasync.interfaces import KEY, ZasyncError
from zasync.model.tx import read_in_fresh_connection
from zasync.storage.database import Database, default_uri, one_line, open_database, redact

#: Seconds a command waits for a ZEO or PostgreSQL server before giving up.
CONNECT_TIMEOUT = 10.0

#: Errors that are the user's or the environment's, not zasync's bugs.
EXPECTED: tuple[type[BaseException], ...] = (ZasyncError, OSError, POSError)


class CliError(click.ClickException):
    """An error to print as one line; exit status 1."""

    exit_code = 1


def fail(message: str) -> NoReturn:
    """Stop the command with ``message`` as its one-line error."""
    raise CliError(one_line(message))


def _is_expected(error: BaseException) -> bool:
    # psycopg2's and RelStorage's errors, without importing either.
    module = type(error).__module__ or ""
    return isinstance(error, EXPECTED) or module.split(".")[0] in ("psycopg2", "relstorage")


def describe(error: BaseException, verbose: int) -> str:
    """The one line an exception becomes on stderr."""
    if _is_expected(error):
        return one_line(error)
    hint = "" if verbose else " (run with -v for the traceback)"
    return f"unexpected {type(error).__name__}: {one_line(error)}{hint}"


class ZasyncGroup(click.Group):
    """The ``zasync`` group: every error, from any command, becomes one line on stderr."""

    verbose = 0

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; turn what it raises into a :class:`CliError`."""
        self.verbose = ctx.params.get("verbose") or 0
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except (EOFError, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            raise  # output piped into `head`: click exits quietly
        except Exception as e:
            raise CliError(describe(e, self.verbose)) from e

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """As click's, but errors print ``zasync: error: <one line>``."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        self.verbose = 0
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as e:
            self._show_cause(e)
            message = one_line(e.format_message())
            if isinstance(e, click.UsageError) and e.ctx is not None:
                message += f" (see '{e.ctx.command_path} --help')"
            click.echo(f"zasync: error: {message}", err=True)
            sys.exit(e.exit_code)
        except click.Abort as e:
            interrupted = isinstance(e.__context__, KeyboardInterrupt)
            click.echo(f"zasync: error: {'interrupted' if interrupted else 'aborted'}", err=True)
            sys.exit(130 if interrupted else 1)
        sys.exit(code if isinstance(code, int) else 0)

    def _show_cause(self, error: BaseException) -> None:
        cause = error.__cause__ or error.__context__
        if self.verbose and cause is not None:
            click.echo("".join(traceback.format_exception(cause)).rstrip(), err=True)


# -- parameters -------------------------------------------------------------------------


class Seconds(click.FloatRange):
    """A number of seconds: finite, and between ``low`` and ``high``."""

    name = "seconds"

    def __init__(self, low: float = 0.0, high: float = 366 * 86400.0) -> None:
        super().__init__(low, high)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """``'2.5'`` -> 2.5; a usage error for what is not a number in range (nor NaN)."""
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return number


# -- the database ------------------------------------------------------------------------


@contextlib.contextmanager
def database(obj: dict[str, Any], *, create: bool = False, queues: bool = True) -> Iterator[Any]:
    """The command's database (a ``ZODB.DB``), closed on exit.

    ``create=False`` (every command but ``worker``) refuses an embedded file
    that does not exist rather than making one; ``queues=True`` refuses a
    database no worker has initialised, in words for a shell user.
    """
    opened = open_cli_database(obj, create=create)
    with opened:
        if queues:
            require_queues(opened)
        yield opened.db


def open_cli_database(obj: dict[str, Any], *, create: bool = False) -> Database:
    """:func:`zasync.storage.database.open_database` with the command line's URI and timeout."""
    return open_database(
        obj["db"], create=create, connect_timeout=obj.get("connect_timeout", CONNECT_TIMEOUT)
    )


def require_queues(opened: Database) -> None:
    """A one-line error unless a worker (or ``install_queues``) has set the database up."""
    installed = read_in_fresh_connection(opened.db, lambda conn: KEY in conn.root())
    if not installed:
        uri = redact(opened.uri or default_uri())
        fail(
            f"no worker has initialised {uri} yet: start `zasync --db {uri} worker` once "
            "(add --burst to stop when idle), or call zasync.install_queues(connection) "
            "in your application"
        )


# -- ports -------------------------------------------------------------------------------


def check_port(host: str, port: int, option: str) -> None:
    """A one-line error now, before anything opens, if ``host:port`` cannot be listened on."""
    if port == 0:
        return
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.create_server((host, port), family=family):
            pass
    except OSError as e:
        # socket.create_server adds the address to strerror; errno says it plainly.
        reason = os.strerror(e.errno) if e.errno and e.errno > 0 else e.strerror or one_line(e)
        fail(f"cannot listen on {host}:{port} ({option}): {reason}")


def stdin_is_interactive() -> bool:
    """True when a person can answer a question on stdin."""
    return sys.stdin is not None and sys.stdin.isatty()


class BadSettings(click.ClickException):
    """A setting of the wrong type or out of range: one line, exit status 2, nothing started."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        """Print ``zasync: error: MESSAGE`` on standard error."""
        click.echo(f"zasync: error: {self.format_message()}", err=True, file=file)
