"""Object ids that no other process can also be using, across server restarts.

A ZEO client asks its server for object ids a hundred at a time and hands
them out as it creates objects.  The server counts them in memory only: a
server killed and restarted starts counting again after the largest id
*committed*, so it hands out again the ids its clients still hold.  ZEO's
``ClientStorage`` keeps that batch across a reconnection, so after a server
crash two processes can create two different objects under one id; the
second commit then fails with a ``ConflictError`` ("serial this txn started
with 0x00") or ``ValueError: A different object already has the same oid``,
as often as the stale batch lasts.

Two remedies, both applied by zasync:

* every ZEO client zasync opens (``zeo://`` and the embedded file's socket)
  drops its batch whenever its connection drops or comes back, and a batch
  asked for on one connection is not kept if the connection changed before
  it arrived (:class:`FreshOidsClientStorage`);
* the embedded server skips :data:`RESTART_GAP` ids when it starts
  (:func:`skip_reissued_oids`), past any id a client may still have given to
  an object added before the crash and not committed yet.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ZEO.ClientStorage import ClientStorage
from ZODB.utils import p64, u64

from zasync.errors import ZasyncError

log = logging.getLogger("zasync.events")

#: Ids the embedded server skips at each start: far more than its clients
#: could hold assigned to objects not yet committed, a sliver of the 2**64.
RESTART_GAP = 1 << 24


class FreshOidsClientStorage(ClientStorage):  # type: ignore[misc]  # ZEO is untyped
    """A ``ClientStorage`` that never hands out an id fetched before its last (re)connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._oids_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def notify_connected(self, conn: Any, info: Any) -> None:
        super().notify_connected(conn, info)
        self._drop_prefetched_oids()

    def notify_disconnected(self) -> None:
        super().notify_disconnected()
        self._drop_prefetched_oids()

    def _drop_prefetched_oids(self) -> None:
        with self._oids_lock:
            del self._oids[:]

    def new_oid(self) -> bytes:
        """Storage API: a new object id, from a batch fetched on the current connection."""
        if self._is_read_only:
            from ZODB.POSException import ReadOnlyError

            raise ReadOnlyError()
        while True:
            with self._oids_lock:
                if self._oids:
                    oid: bytes = self._oids.pop()
                    return oid
                generation = self._connection_generation
            batch = self._call("new_oids")
            with self._oids_lock:
                # A batch answered across a reconnection may come from the
                # server that died: ask the new one instead.
                if generation == self._connection_generation:
                    self._oids[:0] = reversed(batch)


def make_fresh(storage: Any) -> Any:
    """Give ``storage`` (or the ``ClientStorage`` at its base) :class:`FreshOidsClientStorage`'s
    behaviour; other storages are returned as they are.

    zodburi builds ZEO clients itself, so their class is switched after the
    fact: the subclass adds no state but the lock made here.
    """
    base = getattr(storage, "base", None)  # zodburi's DemoStorage over a client (demostorage=)
    if isinstance(base, ClientStorage):
        make_fresh(base)
    if type(storage) is ClientStorage:
        storage._oids_lock = threading.Lock()
        storage.__class__ = FreshOidsClientStorage
        storage._drop_prefetched_oids()
    return storage


def skip_reissued_oids(storage: Any) -> None:
    """Move a storage's next object id :data:`RESTART_GAP` past its largest known one.

    Called by the process that starts serving a FileStorage to others: ids
    its previous run handed out but never saw committed may still sit in
    clients' objects added before the crash.
    """
    start = u64(storage._oid)
    storage.set_max_oid(p64(start + RESTART_GAP))
    log.debug("object ids resume at %d, past any handed out before this start", start + RESTART_GAP)


def connection_generation(storage: Any) -> int | None:
    """How many times a ZEO client storage has (re)connected; None for other storages."""
    base = getattr(storage, "base", None)
    if isinstance(base, ClientStorage):
        storage = base
    if isinstance(storage, ClientStorage):
        return int(storage._connection_generation)
    return None


class SameConnectionGuard:
    """A resource that fails a commit if its ZEO client reconnected since it joined.

    A savepoint gives new objects their ids when it is taken; a transaction
    with savepoints (a batch of jobs) that commits after its client
    reconnected to a restarted server may store objects under ids that the
    server hands out again.  Joined first, it votes last (after the
    connections sent their data) and refuses such a commit: nothing of it is
    stored, and its work is done again.
    """

    def __init__(self, storage: Any, transaction_manager: Any) -> None:
        self._storage = storage
        self._generation = connection_generation(storage)
        self.transaction_manager = transaction_manager

    def join(self, transaction: Any) -> None:
        """Guard ``transaction`` (nothing to guard for storages that are not ZEO clients)."""
        if self._generation is not None:
            transaction.join(self)

    def sortKey(self) -> str:
        """After every ZODB connection, so the check comes once their data is sent."""
        return "~zasync-same-connection-guard"

    def tpc_vote(self, transaction: Any) -> None:
        """Refuse the commit if the client reconnected since the guard was made."""
        if connection_generation(self._storage) != self._generation:
            raise ReconnectedDuringTransaction(
                "the database connection was lost and made again during this transaction; "
                "its new objects' ids may be reused by the server: it is not committed"
            )

    def savepoint(self) -> _NoOpSavepoint:
        """Savepoints have nothing to keep here."""
        return _NoOpSavepoint()

    def abort(self, transaction: Any) -> None:
        """Nothing to undo."""

    def tpc_begin(self, transaction: Any) -> None:
        """Nothing to prepare."""

    def commit(self, transaction: Any) -> None:
        """Nothing to write."""

    def tpc_finish(self, transaction: Any) -> None:
        """Nothing to finish."""

    def tpc_abort(self, transaction: Any) -> None:
        """Nothing to undo."""


class _NoOpSavepoint:
    def rollback(self) -> None:
        """Nothing to roll back."""


class ReconnectedDuringTransaction(ZasyncError):
    """A transaction guarded by :class:`SameConnectionGuard` outlived its connection."""
