"""Opening a database by URI.

=================================  ==================================================
URI                                 storage
=================================  ==================================================
``file://PATH`` or a bare ``PATH``  the embedded FileStorage file at ``PATH`` (default
                                    ``var/zasync/Data.fs``, or ``$ZASYNC_DB``); if a
                                    worker is serving it, a ZEO client of that worker
``memory://``                       an in-memory DemoStorage (tests, experiments)
``zeo://HOST:PORT``, ``zeo:///sock``  a ZEO server (through zodburi; its query options,
                                    such as ``?cache_size=100MB``, pass through)
``postgresql://USER@HOST:PORT/DB``  RelStorage on PostgreSQL (``pip install
                                    'zasync[postgresql]'``), history-free unless
                                    ``?keep_history=true``; RelStorage's options,
                                    such as ``?cache_local_mb=100``, pass through
other schemes                       any zodburi resolver (``zconfig://``, RelStorage's
                                    ``postgres://``, ``mysql://``, ``sqlite://``)
=================================  ==================================================

Every scheme but ``file`` and ``memory`` also takes zodburi's database options
in its query: ``connection_cache_size`` (objects per connection),
``connection_pool_size``, ``database_name``.

Whatever goes wrong while opening (a directory or a file that is not a
database, a missing file when ``create=False``, a server that does not
answer) raises :class:`~zasync.interfaces.ZasyncError` with one line saying
what, so that command lines can print it as it is.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import zc.lockfile
import ZODB
import zodburi
from ZODB.DemoStorage import DemoStorage
from ZODB.FileStorage.FileStorage import FILESTORAGE_MAGIC
from ZODB.POSException import ConflictError, POSError

from zasync import clock
from zasync._files import make_dirs
from zasync.interfaces import ZasyncError
from zasync.storage.embedded import EmbeddedServer, served_socket, socket_path
from zasync.storage.filestorage import SafeFileStorage
from zasync.storage.fresh_oids import FreshOidsClientStorage, make_fresh, skip_reissued_oids
from zasync.storage.takeover import TakeOver

log = logging.getLogger("zasync.events")

ENV_VAR = "ZASYNC_DB"
DEFAULT_PATH = os.path.join("var", "zasync", "Data.fs")
_LOCK_WAIT_SECONDS = 10.0
#: How long a client of an embedded file waits for its server (or a take-over) to answer.
_CLIENT_WAIT_SECONDS = 30


def default_uri() -> str:
    """``$ZASYNC_DB``, or the embedded file ``var/zasync/Data.fs``."""
    return os.environ.get(ENV_VAR) or f"file://{DEFAULT_PATH}"


@dataclass
class Database:
    """An open database, and the embedded server zasync started for it, if any."""

    db: Any
    uri: str
    kind: str  # 'file', 'file-client', 'memory' or the URI scheme
    path: str | None = None
    server: EmbeddedServer | None = field(default=None, repr=False)
    #: A client of an embedded file watching to serve it if its server stops.
    takeover: TakeOver | None = field(default=None, repr=False)

    @property
    def serving(self) -> bool:
        """True while this process serves an embedded file to others (from the start or
        since it took over)."""
        return self.server is not None or (self.takeover is not None and self.takeover.serving)

    def close(self) -> None:
        """Stop serving (if serving) and close the database."""
        if self.server is not None:
            self.server.close()
            self.server = None
        self.db.close()
        if self.takeover is not None:
            self.takeover.close()
            self.takeover = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def file_path(uri: str) -> str | None:
    """The path of a ``file://`` URI or bare path; None for other schemes."""
    if uri.startswith("file://"):
        return uri[len("file://") :].split("?", 1)[0]
    if "://" not in uri:
        return uri
    return None


def open_database(
    uri: str | None = None,
    *,
    serve: bool = True,
    create: bool = True,
    connect_timeout: float | None = None,
    cache_size: int | None = None,
    pool_size: int | None = None,
    database_name: str | None = None,
) -> Database:
    """Open the database named by ``uri`` (default: :func:`default_uri`).

    An embedded file is shared: the first process to open it holds it and
    serves it to the others, which connect as its clients, and when it stops
    one of them serves it next (:mod:`zasync.storage.takeover`).  ``serve=False``
    keeps the file to this process alone and never serves it.  ``create=False`` refuses an
    embedded file that does not exist yet (and creates no directory) rather
    than making a new database.  ``connect_timeout`` bounds the wait for a ZEO
    or PostgreSQL server (seconds; the URI's own ``wait_timeout`` or
    ``connect_timeout`` wins).  The keyword options override the URI's
    database options.  ZasyncError, with one line, when it cannot be opened.
    """
    uri = uri or default_uri()
    options = {
        key: value
        for key, value in (
            ("cache_size", cache_size),
            ("pool_size", pool_size),
            ("database_name", database_name),
        )
        if value is not None
    }
    path = file_path(uri)
    if path is not None:
        return _open_file(uri, path, serve, create, options)
    if uri.startswith("memory://"):
        return Database(ZODB.DB(DemoStorage(name="memory"), **options), uri, "memory")
    scheme = uri.split("://", 1)[0]
    resolved = _RELSTORAGE_ALIASES.get(scheme, scheme) + uri[len(scheme) :]
    if scheme in _MISSING_EXTRA:
        resolved = _with_default_port(resolved, 5432)
    if scheme == "postgresql" and "keep_history=" not in uri:
        # A queue rewrites its objects all day: keep no history unless asked.
        resolved = _with_query(resolved, "keep_history", "false")
    if connect_timeout is not None:
        # ZEO's client waits 30 s for its server by default; psycopg2 for ever.
        if scheme == "zeo" and "wait_timeout=" not in uri:
            resolved = _with_query(resolved, "wait_timeout", str(max(1, round(connect_timeout))))
        elif scheme in _MISSING_EXTRA and "connect_timeout=" not in uri:
            resolved = _with_query(resolved, "connect_timeout", str(max(1, round(connect_timeout))))
    try:
        factory, dbkw = zodburi.resolve_uri(resolved)
    except KeyError as e:
        hint = _MISSING_EXTRA.get(scheme)
        raise ZasyncError(f"cannot open {redact(uri)!r}: {hint or e}") from None
    except (ValueError, TypeError) as e:  # a bad port, a bad query value
        raise ZasyncError(f"cannot open {redact(uri)!r}: {one_line(e)}") from None
    dbkw.update(options)
    storage = make_fresh(_make_storage(factory, uri, scheme))
    return Database(_open_db(storage, dbkw), uri, _KINDS.get(scheme, scheme))


def _open_db(storage: Any, options: dict[str, Any]) -> Any:
    """``ZODB.DB(storage)``, which creates the root object in a new database.

    Processes opening a new database together race to create that root; the
    losers get a conflict, and find the root made when they try again.
    """
    for attempt in range(1, 4):
        try:
            return ZODB.DB(storage, **options)
        except ConflictError:
            if attempt == 3:
                raise
            log.info("another process created the database root first; opening again")
    raise AssertionError("unreachable")


def _with_query(uri: str, key: str, value: str) -> str:
    return uri + ("&" if "?" in uri else "?") + f"{key}={value}"


def _with_default_port(uri: str, port: int) -> str:
    # RelStorage's resolver writes a missing port into its DSN as port='None'.
    try:
        parts = urllib.parse.urlsplit(uri)
        missing = parts.port is None and bool(parts.hostname)
    except ValueError:
        return uri  # a bad port: the resolver says so
    if not missing:
        return uri
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.netloc}:{port}"))


def redact(uri: str) -> str:
    """``uri`` without the password it may hold (``postgresql://u:secret@h`` -> ``u:***@h``)."""
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", uri)


def one_line(error: BaseException | str) -> str:
    """An error (or a text) on one line: its lines joined, blank ones dropped.

    An exception with an empty message is named by its class.
    """
    text = str(error)
    joined = " ".join(line.strip() for line in text.splitlines() if line.strip())
    if isinstance(error, BaseException) and not joined:
        return type(error).__name__
    return joined


class _ThisThread(logging.Filter):
    """Drops the records of one thread: RelStorage's own report of a failed first connection,
    which the ZasyncError raised then says once, in one line."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread


_RELSTORAGE_CONNECTIONS = "relstorage.adapters.postgresql.connmanager"
_RELSTORAGE_RECONNECTS = "relstorage.adapters.connections"


class _ReconnectTracebacks(logging.Filter):
    """Keeps RelStorage's "attempting reconnect" warning, without its traceback.

    After a database outage every pooled connection finds its server
    connection gone the next time it is used (often as a worker stops) and
    RelStorage logs each reconnect with a traceback.  The reconnect is
    routine, and zasync reports the outage itself: one line says enough.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if "attempting reconnect" in str(record.msg):
            record.exc_info = None
            record.exc_text = None
        return True


def _quiet_reconnect_tracebacks() -> None:
    """Install :class:`_ReconnectTracebacks` on RelStorage's connection logger (once)."""
    reconnects = logging.getLogger(_RELSTORAGE_RECONNECTS)
    if not any(isinstance(f, _ReconnectTracebacks) for f in reconnects.filters):
        reconnects.addFilter(_ReconnectTracebacks())


def _make_storage(factory: Any, uri: str, scheme: str) -> Any:
    if scheme in _RELSTORAGE_ALIASES or scheme in _RELSTORAGE_ALIASES.values():
        _quiet_reconnect_tracebacks()
    quiet = _ThisThread()
    connections_log = logging.getLogger(_RELSTORAGE_CONNECTIONS)
    connections_log.addFilter(quiet)
    try:
        return _try_storage(factory, uri, scheme)
    finally:
        connections_log.removeFilter(quiet)


def _try_storage(factory: Any, uri: str, scheme: str) -> Any:
    for attempt in range(1, _SCHEMA_ATTEMPTS + 1):
        try:
            return factory()
        except ImportError as e:
            hint = _MISSING_EXTRA.get(scheme, "")
            raise ZasyncError(f"cannot open {redact(uri)!r}: {e}; {hint}") from None
        except Exception as e:
            # Workers starting together on a new RelStorage database all try to
            # create its tables; the losers fail, and find them made next time.
            if scheme not in _MISSING_EXTRA or attempt == _SCHEMA_ATTEMPTS or _unreachable(e):
                raise ZasyncError(f"cannot open {redact(uri)!r}: {_why(e, scheme)}") from e
            log.info("opening %s failed (%s); retrying", scheme, type(e).__name__)
            clock.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def _unreachable(error: Exception) -> bool:
    """No connection (refused, no answer, refused login): trying again at once would not help.

    psycopg2 raises its plain OperationalError for those; the errors of
    creating tables together are other classes (some of them its subclasses).
    """
    return type(error).__name__ == "OperationalError"


def _why(error: Exception, scheme: str) -> str:
    if scheme == "zeo" and type(error).__name__ == "ClientDisconnected":
        return f"no ZEO server answered ({one_line(error)})"
    return f"{type(error).__name__}: {one_line(error)}"


_SCHEMA_ATTEMPTS = 5
# postgresql:// is what PostgreSQL's own tools and most libraries call it.
_RELSTORAGE_ALIASES = {"postgresql": "postgres"}
_KINDS = {"postgresql": "postgres"}
_MISSING_EXTRA = {
    scheme: "RelStorage is not installed; pip install 'zasync[postgresql]'"
    for scheme in ("postgresql", "postgres")
}


def _check_file(path: str, create: bool) -> None:
    """Refuse, before FileStorage leaves its lock and temporary files, what is no database."""
    if os.path.isdir(path):
        raise ZasyncError(f"{path} is a directory, not a database file")
    if not os.path.lexists(path):
        if create:
            return
        raise ZasyncError(
            f"no database at {path}: a worker creates it when it first starts "
            f"(`zasync --db file://{path} worker`)"
        )
    if not os.path.isfile(path):
        raise ZasyncError(f"{path} is not a regular file, so not a database file")
    try:
        with open(path, "rb") as f:
            magic = f.read(len(FILESTORAGE_MAGIC))
    except OSError as e:
        raise ZasyncError(f"cannot read {path}: {e.strerror or one_line(e)}") from None
    if magic and magic != FILESTORAGE_MAGIC:
        raise ZasyncError(f"{path} is not a database file (no FileStorage header)")
    if not magic and not create:
        raise ZasyncError(f"{path} is an empty file, not a database yet")
    folder = os.path.dirname(os.path.abspath(path))
    for needed in (path, folder):
        if not os.access(needed, os.W_OK):
            raise ZasyncError(
                f"{needed} is read-only: zasync writes beside the database (its lock and "
                "index) even to read it"
            )


def _open_file(uri: str, path: str, serve: bool, create: bool, options: dict[str, Any]) -> Database:
    if not path:
        raise ZasyncError(f"{uri!r} names no file")
    deadline = time.monotonic() + _LOCK_WAIT_SECONDS
    while True:
        # Served by a live worker (its socket answers): be its client, even if
        # asked to serve (a second worker on the same machine).
        address = served_socket(path)  # refuses a socket not owned by the file's owner
        if address is not None:
            return _connect_to_worker(uri, path, options, address, serve)
        _check_file(path, create)
        try:
            make_dirs(os.path.dirname(os.path.abspath(path)))  # new directories: 0700
            storage = SafeFileStorage(path)  # its files: 0600
        except OSError as e:
            raise ZasyncError(f"cannot open {path}: {e.strerror or one_line(e)}") from e
        except POSError as e:  # a damaged file: FileStorageFormatError, CorruptedError
            raise ZasyncError(f"cannot open {path}: {type(e).__name__}: {one_line(e)}") from e
        except zc.lockfile.LockError:
            # Another process has it; if it is a worker starting, its socket appears soon.
            if time.monotonic() > deadline:
                raise ZasyncError(
                    f"{path} is held by a process that does not share it (a worker started "
                    "with --no-serve, or a program that opened the file itself); stop that "
                    "process, or let zasync open the file for it"
                ) from None
            time.sleep(0.1)
            continue
        db = ZODB.DB(storage, **options)
        server = None
        if serve:
            skip_reissued_oids(storage)
            server = EmbeddedServer(db, storage, socket_path(path))
        return Database(db, uri, "file", path, server)


class _SameTidInvalidation(logging.Filter):
    """Drops ZEO's warning about an invalidation for data it already has.

    The worker announces its own commits to clients from its commit thread,
    so a client may load the new state just before the announcement of that
    same transaction arrives; ZEO then (rightly) ignores the announcement and
    warns.  Reads stay consistent: ZEO serves snapshots with ``loadBefore``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "same tid as current" not in record.getMessage()


def _wait_for_connection(storage: Any, timeout: float) -> None:
    """Wait until ``storage`` is connected to the server seen, or to whoever took over from it.

    A server that stops while the client is greeting it cancels that
    connection attempt at once; the client tries again by itself, so the
    wait goes on until ``timeout``.
    """
    from ZEO.Exceptions import ClientDisconnected

    deadline = time.monotonic() + timeout
    while True:
        try:
            storage._wait(max(0.1, deadline - time.monotonic()))
            return
        except ClientDisconnected:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def _connect_to_worker(
    uri: str, path: str, options: dict[str, Any], address: str, serve: bool
) -> Database:
    cache_log = logging.getLogger("ZEO.cache")
    if not any(isinstance(f, _SameTidInvalidation) for f in cache_log.filters):
        cache_log.addFilter(_SameTidInvalidation())
    storage = FreshOidsClientStorage(address, wait=False, wait_timeout=_CLIENT_WAIT_SECONDS)
    # Watching from the start: the server may stop before this client first
    # connects (a short-lived command that served the file a moment ago).
    takeover = TakeOver(path, storage) if serve else None
    try:
        _wait_for_connection(storage, _CLIENT_WAIT_SECONDS)
        db = ZODB.DB(storage, **options)
    except Exception as e:
        storage.close()
        if takeover is not None:
            takeover.close()
        raise ZasyncError(f"cannot open {path} through {address}: {one_line(e)}") from e
    return Database(db, uri, "file-client", path, takeover=takeover)
