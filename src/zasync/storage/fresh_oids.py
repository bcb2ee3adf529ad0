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
  it arrived; it also refuses to store a new object under an id it gave out
  on an earlier connection (a savepoint gives ids long before the commit),
  failing that commit as a disconnection, and never gives one id to two
  objects when the restarted server hands out again an id it still holds
  for an object not stored yet (:class:`FreshOidsClientStorage`);
* the embedded server skips :data:`RESTART_GAP` ids when it starts
  (:func:`skip_reissued_oids`), past any id a client may still have given to
  an object added before the crash and not committed yet.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ZEO.ClientStorage import ClientStorage
from ZEO.Exceptions import ClientDisconnected
from ZODB.utils import p64, u64, z64

log = logging.getLogger("zasync.events")

#: Ids the embedded server skips at each start: far more than its clients
#: could hold assigned to objects not yet committed, a sliver of the 2**64.
RESTART_GAP = 1 << 24
#: New object ids a client remembers handing out until they are stored.
HANDED_OUT_KEPT = 100_000


class FreshOidsClientStorage(ClientStorage):  # type: ignore[misc]  # ZEO is untyped
    """A ``ClientStorage`` that never hands out an id fetched before its last (re)connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._oids_lock = threading.Lock()
        self._handed_out: dict[bytes, int] = {}
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
                while self._oids:
                    oid: bytes = self._oids.pop()
                    if oid in self._handed_out:
                        # A restarted server handing out again an id this client
                        # already gave to an object not stored yet (in a savepoint
                        # across the reconnection): two objects must not share it.
                        continue
                    self._note_handed_out(oid)
                    return oid
                generation = self._connection_generation
            batch = self._call("new_oids")
            with self._oids_lock:
                # A batch answered across a reconnection may come from the
                # server that died: ask the new one instead.
                if generation == self._connection_generation:
                    self._oids[:0] = reversed(batch)

    def _note_handed_out(self, oid: bytes) -> None:
        """Remember on which connection ``oid`` was given out (called with the lock held)."""
        handed_out = self._handed_out
        handed_out[oid] = self._connection_generation
        if len(handed_out) > HANDED_OUT_KEPT:  # ids of objects never stored: forget the oldest
            del handed_out[next(iter(handed_out))]

    def store(self, oid: bytes, serial: bytes, data: bytes, version: str, txn: Any) -> None:
        """Storage API: refuse to store a new object under an id from an earlier connection.

        ZEO poisons a commit that a reconnection interrupts once it began;
        an id given to a new object before (by a savepoint, long before the
        commit) escapes that check, and a restarted server hands it out again.
        """
        if serial == z64:
            with self._oids_lock:
                given_on = self._handed_out.pop(oid, None)
            if given_on is not None and given_on != self._connection_generation:
                raise ClientDisconnected(
                    "store", "a new object's id was given out before the connection was lost"
                )
        super().store(oid, serial, data, version, txn)


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
        storage._handed_out = {}
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
