"""The change poller behind wake-ups on storages that send no invalidations (RelStorage)."""

from __future__ import annotations

import threading

import transaction
import ZODB
from persistent.mapping import PersistentMapping
from ZODB.MappingStorage import MappingStorage

from zasync.storage.watch import ChangePoller

PATIENCE = 60.0


def _db_with_object():
    db = ZODB.DB(MappingStorage())
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    conn.root()["thing"] = thing = PersistentMapping()
    tm.commit()
    return db, tm, conn, thing


def test_an_object_changed_before_the_poller_first_reads_it_counts_as_changed():
    db, tm, conn, thing = _db_with_object()
    watched: set[bytes] = set()
    seen: list[bytes] = []
    called = threading.Event()

    def callback(tid, oids, local):
        seen.extend(oids)
        called.set()

    poller = ChangePoller(db, lambda: watched, callback, interval=0.01)
    poller.start()
    try:
        # The caller read the object, then it changed, then the caller asked to watch it:
        # the poller never saw the old serial, yet the change must not go unnoticed.
        thing["n"] = 1
        tm.commit()
        watched.add(thing._p_oid)
        assert called.wait(PATIENCE), "the first sighting woke nobody"
        assert seen == [thing._p_oid]

        called.clear()
        thing["n"] = 2
        tm.commit()
        assert called.wait(PATIENCE), "a later change woke nobody"
        assert seen == [thing._p_oid, thing._p_oid]
    finally:
        poller.stop()
        conn.close()
        db.close()


def test_an_unchanged_object_is_reported_once_only():
    db, _tm, conn, thing = _db_with_object()
    calls: list[bytes] = []
    polls = threading.Semaphore(0)
    watched = {thing._p_oid}

    def oids():
        polls.release()
        return watched

    poller = ChangePoller(db, oids, lambda tid, changed, local: calls.extend(changed), 0.01)
    poller.start()
    try:
        for _ in range(20):  # twenty polls of an object nobody touches
            assert polls.acquire(timeout=PATIENCE)
        assert calls == [thing._p_oid]
    finally:
        poller.stop()
        conn.close()
        db.close()
