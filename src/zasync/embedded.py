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
import tempfile
import threading
from collections.abc import Collection
from typing import Any

import zc.lockfile
from ZEO.asyncio.server import Result
from ZEO.StorageServer import StorageServer, ZEOStorage

from zasync._watch import commit_watcher

log = logging.getLogger("zasync.events")

STORAGE_ID = "1"
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux


def socket_path(data_fs: str | os.PathLike[str]) -> str:
    """Where the worker serving ``data_fs`` listens: beside it, or in /tmp if too long."""
    path = os.path.abspath(os.fspath(data_fs))
    beside = f"{path}.sock"
    if len(beside.encode()) <= _MAX_SOCKET_PATH:
        return beside
    digest = hashlib.sha1(path.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"zasync-{digest}.sock")


def is_served(data_fs: str | os.PathLike[str]) -> bool:
    """True if a process holds ``data_fs``'s lock and accepts connections on its socket.

    The lock is tested by trying to take it (and letting it go at once): the
    lock file's recorded process id outlives the lock.  The socket is tested
    by connecting, since a worker killed with ``kill -9`` leaves its socket
    file behind while another process may hold the lock.
    """
    address = socket_path(data_fs)
    if not os.path.exists(address):
        return False
    try:
        lock = zc.lockfile.LockFile(f"{os.fspath(data_fs)}.lock")
    except zc.lockfile.LockError:
        pass
    else:
        lock.close()
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(address)
    except OSError:
        return False
    finally:
        probe.close()
    return True


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

    def __init__(self, address: str, storage: Any, local_adapter: Any) -> None:
        super().__init__(address, {STORAGE_ID: storage})
        self._local_adapter = local_adapter
        self._pending: list[tuple[bytes, list[bytes]]] = []
        self._pending_lock = threading.Lock()

    def create_client_handler(self) -> _ClientHandler:
        return _ClientHandler(self, self.read_only)

    def announce_local_commit(self, tid: bytes, oids: list[bytes]) -> None:
        """Queue a commit the worker made itself (called inside that commit)."""
        with self._pending_lock:
            self._pending.append((tid, oids))
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
        self._local_adapter.invalidate(tid, invalidated)


class EmbeddedServer:
    """Serves an open database's FileStorage to other local processes; see the module doc."""

    def __init__(self, db: Any, storage: Any, address: str) -> None:
        self.address = address
        self._db = db
        _remove_stale_socket(address)
        server_log = logging.getLogger("ZEO.asyncio.server")
        if not any(isinstance(f, _ClientWentAway) for f in server_log.filters):
            server_log.addFilter(_ClientWentAway())
        self._server = _Server(address, storage, db._mvcc_storage)
        self._watcher = commit_watcher(db)
        self._watcher.subscribe(self._forward_local_commit)
        self._server.start_thread(daemon=True)
        os.chmod(address, 0o600)  # the owner's processes only
        log.info("serving %s to other processes at %s", storage.getName(), address)

    def _forward_local_commit(self, tid: bytes, oids: Collection[bytes], local: bool) -> None:
        if local:
            self._server.announce_local_commit(tid, list(oids))

    def close(self) -> None:
        """Stop serving (clients are disconnected); the storage itself stays open."""
        self._watcher.unsubscribe(self._forward_local_commit)
        self._server.storages = {}  # StorageServer.close would close our storage
        self._server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address)


def _remove_stale_socket(address: str) -> None:
    """Remove a socket file left by a dead worker; refuse if a live one answers."""
    if not os.path.exists(address):
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
