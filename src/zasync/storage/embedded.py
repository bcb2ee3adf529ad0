"""Sharing a worker's FileStorage file with other processes on the machine.

A FileStorage file has one writer process.  The worker is that process, and
it commits to the file directly, at full speed.  So that the application,
``zasync put`` and ``zasync status`` can still use the database while the
worker runs, the worker also serves the same storage through a ZEO server
on a Unix socket beside the file (:func:`socket_path`).  Other processes
that open ``file://PATH`` find the socket and connect as ZEO clients.

Both sides see each other's commits: the worker's commits are broadcast to
the ZEO clients, and the clients' commits invalidate the worker's caches.
Both notifications happen inside FileStorage's ``tpc_finish`` callback, before
the storage's last transaction id moves, so no connection can start a
transaction that sees the new data without its invalidations.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Collection
from typing import Any

import zc.lockfile
from ZEO.asyncio.server import Result
from ZEO.StorageServer import StorageServer, ZEOStorage

from zasync._files import make_dirs, private_umask, tighten
from zasync.interfaces import ZasyncError
from zasync.storage.watch import commit_watcher

log = logging.getLogger("zasync.events")

STORAGE_ID = "1"
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux
RUNTIME_ENV_VAR = "ZASYNC_RUNTIME_DIR"
#: Seconds a stopping server waits for a client's commit to finish before disconnecting it.
CLOSE_TIMEOUT = 5.0


def socket_path(data_fs: str | os.PathLike[str]) -> str:
    """Where a worker serving ``data_fs`` listens (creating a private directory for it if needed).

    Beside the file (``Data.fs.sock``) when that name fits a socket address
    and the file's directory is not writable by others.  Otherwise in the
    first private runtime directory (see :func:`runtime_dirs`), under a name
    derived from a hash of the file's absolute path.  Never at a name in a
    directory others can write to, where another user could take it first.
    """
    path = os.path.abspath(os.fspath(data_fs))
    beside = _beside(path)
    if beside is not None:
        return beside
    refused = []
    for directory in runtime_dirs():
        address = os.path.join(directory, _hashed_name(path))
        if len(address.encode()) > _MAX_SOCKET_PATH:
            refused.append(f"{directory} (too long)")
            continue
        try:
            _make_private_dir(directory)
        except OSError as e:
            refused.append(f"{directory} ({e.strerror or e})")
            continue
        problem = _not_private(directory)
        if problem is None:
            return address
        log.warning("not putting the socket of %s in %s: %s", path, directory, problem)
        refused.append(f"{directory} ({problem})")
    raise ZasyncError(
        f"no private directory for the socket of {path} (a socket beside it would be too long "
        f"or shared): tried {', '.join(refused) or 'nothing'}; set {RUNTIME_ENV_VAR} to a "
        "directory only you can write to"
    )


def socket_candidates(data_fs: str | os.PathLike[str]) -> list[str]:
    """Every address a worker serving ``data_fs`` may listen at, most likely first.

    A client looks at each, since its environment (``$XDG_RUNTIME_DIR``) may
    differ from the worker's.  Nothing is created.
    """
    path = os.path.abspath(os.fspath(data_fs))
    beside = _beside(path)
    if beside is not None:
        return [beside]
    return [
        os.path.join(directory, _hashed_name(path))
        for directory in runtime_dirs()
        if os.path.isdir(directory) and _not_private(directory) is None
    ]


def runtime_dirs() -> list[str]:
    """Where sockets of long database paths may go, in order of preference.

    ``$ZASYNC_RUNTIME_DIR``, ``$XDG_RUNTIME_DIR``, ``~/.cache/zasync`` (or
    under ``$XDG_CACHE_HOME``), and ``zasync-UID`` in the temporary
    directory.  A directory is used only if it is owned by this user, is not
    a symbolic link and is not writable by anyone else.
    """
    found = [os.environ.get(RUNTIME_ENV_VAR, ""), os.environ.get("XDG_RUNTIME_DIR", "")]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if os.path.isabs(cache):
        found.append(os.path.join(cache, "zasync"))
    found.append(os.path.join(tempfile.gettempdir(), f"zasync-{os.geteuid()}"))
    return [os.path.abspath(d) for d in dict.fromkeys(found) if d]


def check_socket(data_fs: str | os.PathLike[str], address: str) -> None:
    """Refuse (ZasyncError) a socket not owned by ``data_fs``'s owner, or not a socket."""
    try:
        owner = os.stat(data_fs).st_uid
        st = os.lstat(address)
    except FileNotFoundError as e:
        raise _SocketGone(f"cannot check the socket of {data_fs}: {e}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise ZasyncError(f"refusing to connect to {address}: it is not a socket")
    if st.st_uid != owner:
        raise ZasyncError(
            f"refusing to connect to {address}: it is owned by uid {st.st_uid}, but "
            f"{data_fs} by uid {owner}; another user may be impersonating its worker"
        )


class _SocketGone(ZasyncError):
    """The socket (or the file) to check is not there (any more)."""


def served_socket(data_fs: str | os.PathLike[str]) -> str | None:
    """The socket of the live worker serving ``data_fs``, or None if nobody serves it.

    Served means: a process holds the file's lock and accepts connections on
    one of its :func:`socket_candidates`.  The lock is tested by trying to
    take it (and letting it go at once): the lock file's recorded process id
    outlives the lock.  The socket is tested by connecting, since a worker
    killed with ``kill -9`` leaves its socket file behind while another
    process may hold the lock.  A socket not owned by the file's owner is
    refused (ZasyncError) before any connection.
    """
    candidates = [a for a in socket_candidates(data_fs) if os.path.lexists(a)]
    if not candidates:
        return None
    try:
        lock = zc.lockfile.LockFile(f"{os.fspath(data_fs)}.lock")
    except zc.lockfile.LockError:
        pass
    else:
        lock.close()
        return None
    for address in candidates:
        try:
            check_socket(data_fs, address)
        except _SocketGone:
            continue  # its server stopped a moment ago: nobody serves there now
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2)
        try:
            probe.connect(address)
        except OSError:
            continue
        finally:
            probe.close()
        return address
    return None


def is_served(data_fs: str | os.PathLike[str]) -> bool:
    """True if a live worker serves ``data_fs`` (see :func:`served_socket`)."""
    return served_socket(data_fs) is not None


def _beside(path: str) -> str | None:
    beside = f"{path}.sock"
    if len(beside.encode()) > _MAX_SOCKET_PATH:
        return None
    try:
        shared = os.stat(os.path.dirname(path)).st_mode & stat.S_IWOTH
    except FileNotFoundError:
        shared = 0  # not created yet: make_dirs creates it private
    return None if shared else beside


def _hashed_name(path: str) -> str:
    return f"zasync-{hashlib.sha256(path.encode()).hexdigest()[:24]}.sock"


def _make_private_dir(directory: str) -> None:
    if not os.path.lexists(directory):
        parent = os.path.dirname(directory)
        if not os.path.isdir(parent):
            make_dirs(parent)
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)


def _not_private(directory: str) -> str | None:
    """Why ``directory`` is not private to this user, or None if it is."""
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    if st.st_uid != os.geteuid():
        return f"it is owned by uid {st.st_uid}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"others can write to it (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


class _ClientWentAway(logging.Filter):
    """Drops ZEO's ERROR for a client that disconnected abruptly.

    Processes probing whether the worker serves the file connect and leave;
    a client killed with its process does the same.  Neither is the
    server's error.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.startswith("Disconnected")
            and ("BrokenPipe" in message or "ConnectionReset" in message)
        )


class _ClientHandler(ZEOStorage):  # type: ignore[misc]  # ZEO is untyped
    """A client's session, which tells the client only transaction ids in order.

    It remembers the newest id the client was told about when it registered
    or asked (ZEO's cache verification does; both go through
    ``lastTransaction``, in the event loop).

    And it answers a client's commit with that commit's own id.  ZEO answers
    with the storage's last id read just after the commit, assuming nobody
    else can commit in between; the worker does, from its own threads.  The
    client would then file its new object states under the worker's later id
    and refuse the invalidations for the ids in between, keeping stale data.
    """

    registered_at = b""
    _finished_tid: bytes | None = None

    def register(self, storage_id: str, read_only: bool) -> Any:
        if self.server.closing:
            # Accepted just before the server stopped listening: hang up, and
            # the client tries again, finding whoever serves next.
            self.connection.close()
            return None
        return super().register(storage_id, read_only)

    def lastTransaction(self) -> bytes:
        tid: bytes = super().lastTransaction()
        if tid and tid > self.registered_at:
            self.registered_at = tid
        return tid

    def _invalidate(self, tid: bytes) -> None:
        self._finished_tid = tid  # called inside the storage's tpc_finish
        super()._invalidate(tid)

    def tpc_finish(self, id: Any) -> Any:
        self._finished_tid = None
        result = super().tpc_finish(id)
        if isinstance(result, Result) and self._finished_tid is not None:
            return Result(self._finished_tid, self._clear_transaction)
        return result


class _Server(StorageServer):  # type: ignore[misc]  # ZEO is untyped
    """A ZEO server that also serves the worker's own commits, in tid order.

    The worker commits to the storage directly, from its own threads.  Its
    commits are queued here (in commit order, from inside the commit) and sent
    to the clients from the server's event loop, which also runs client
    registrations and client commits: before a client commit is announced or
    answered, the worker's earlier commits are sent.  So every client sees
    transaction ids only increase, as ZEO requires.
    """

    closing = False  # set once it stops: registrations are turned away
    storages: dict[str, Any]

    def __init__(self, address: str, storage: Any, local_adapter: Any) -> None:
        super().__init__(address, {STORAGE_ID: storage})
        self._local_adapter = local_adapter
        self._pending: list[tuple[bytes, list[bytes]]] = []
        self._pending_lock = threading.Lock()

    def close_between_commits(self, timeout: float) -> None:
        """Stop listening and disconnect every client, but not in a client's commit's second phase.

        ZEO's own close cuts connections whenever it comes: a client between
        its vote and its finish then logs CRITICAL (a storage error in the
        second phase of a commit), and closing a connection after the event
        loop stopped logs "Event loop is closed".  Here the connections are
        closed from inside the event loop, which runs every client commit, at
        a moment no client holds the commit lock (or after ``timeout``
        seconds), so that a client's commit either fails in its first phase
        (and is retried) or is finished.  Then ZEO's close stops the loop.
        """
        acceptor = self.acceptor
        if acceptor is None or acceptor.closed:
            return
        self.closing = True
        loop = acceptor.event_loop
        closed = threading.Event()
        deadline = time.monotonic() + timeout

        def close_when_unlocked() -> None:
            if self.lock_managers[STORAGE_ID].locked is not None and time.monotonic() < deadline:
                loop.call_later(0.005, close_when_unlocked)
                return
            if acceptor.server is not None:
                acceptor.server.close()  # no new clients
            for clients in self.zeo_storages_by_storage_id.values():
                for client in clients:
                    client.connection.close()
                del clients[:]  # closed here: nothing left for ZEO's close to schedule
            closed.set()

        with contextlib.suppress(RuntimeError):  # the loop already stopped
            loop.call_soon_threadsafe(close_when_unlocked)
            closed.wait(timeout + 5)
        # Only now: a client registering meanwhile must still find the storage.
        self.storages = {}  # StorageServer.close would close it; its owner does
        self.close()

    def create_client_handler(self) -> _ClientHandler:
        return _ClientHandler(self, self.read_only)

    def announce_local_commit(self, tid: bytes, oids: list[bytes]) -> None:
        """Queue a commit the worker made itself (called inside that commit)."""
        with self._pending_lock:
            self._pending.append((tid, oids))
            if len(self._pending) > 1:
                return  # a flush is scheduled already and will send this one too
        acceptor = self.acceptor
        if acceptor is not None:  # None once closed
            acceptor.event_loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        """Send the queued worker commits to every client (event loop only)."""
        with self._pending_lock:
            pending, self._pending = self._pending, []
        for tid, oids in pending:
            self._send(None, tid, oids)

    def _send(self, committer: Any, tid: bytes, oids: Any) -> None:
        """Record and send one commit at once (event loop only).

        ZEO's own broadcast queues its messages; sending everything directly,
        in the order the loop handles commits, keeps each client's ids rising.
        """
        invq = self.invq[STORAGE_ID]
        if len(invq) >= self.invq_bound:
            invq.pop()
        invq.insert(0, (tid, oids))
        for zs in self.zeo_storages_by_storage_id[STORAGE_ID]:
            # A client told of this id (or a later one) when it connected has
            # nothing to learn from it.
            if zs is not committer and tid > getattr(zs, "registered_at", b""):
                zs.async_("invalidateTransaction", tid, oids)

    def invalidate(self, zeo_storage: Any, storage_id: str, tid: bytes, invalidated: Any) -> None:
        if zeo_storage is None:
            super().invalidate(zeo_storage, storage_id, tid, invalidated)
            return
        # A client committed (we are in the event loop, inside its commit):
        # the worker's earlier commits go out first, then this one.
        self._flush()
        self._send(zeo_storage, tid, list(invalidated))
        if self._local_adapter is not None:
            self._local_adapter.invalidate(tid, invalidated)


class EmbeddedServer:
    """Serves an open database's FileStorage to other local processes; see the module doc."""

    def __init__(self, db: Any, storage: Any, address: str) -> None:
        """Serve ``storage`` at ``address``.

        ``db`` is this process's own database on ``storage``, whose commits
        go to the file directly and are forwarded to the clients; None when
        this process only serves (it took over from a stopped server, see
        :mod:`zasync.storage.takeover`) and its own database is a client too.
        """
        self.address = address
        self._db = db
        _remove_stale_socket(address)
        server_log = logging.getLogger("ZEO.asyncio.server")
        if not any(isinstance(f, _ClientWentAway) for f in server_log.filters):
            server_log.addFilter(_ClientWentAway())
        with private_umask():  # bound without a moment open to others
            self._server = _Server(address, storage, db._mvcc_storage if db else None)
        self._watcher = commit_watcher(db) if db is not None else None
        if self._watcher is not None:
            self._watcher.subscribe(self._forward_local_commit)
        self._server.start_thread(daemon=True)
        tighten(address)  # the owner's processes only (connecting needs write)
        log.debug("serving %s to other processes at %s", storage.getName(), address)

    def _forward_local_commit(self, tid: bytes, oids: Collection[bytes], local: bool) -> None:
        if local:
            self._server.announce_local_commit(tid, list(oids))

    def close(self) -> None:
        """Stop serving (clients are disconnected); the storage itself stays open."""
        if self._watcher is not None:
            self._watcher.unsubscribe(self._forward_local_commit)
        self._server.close_between_commits(CLOSE_TIMEOUT)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address)


def _remove_stale_socket(address: str) -> None:
    """Remove a socket file left by a dead worker or another user; refuse if ours answers."""
    try:
        st = os.lstat(address)
    except FileNotFoundError:
        return
    if st.st_uid != os.geteuid() or not stat.S_ISSOCK(st.st_mode):
        # Not ours: never talk to it, take its place (our clients refuse it anyway).
        log.warning("removing %s, which belongs to uid %d, to serve there", address, st.st_uid)
        os.unlink(address)
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(address)
    except OSError:
        os.unlink(address)
    else:
        raise RuntimeError(f"another process is already serving at {address}")
    finally:
        probe.close()
