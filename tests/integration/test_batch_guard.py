"""The guard of batch transactions: no commit on a ZEO connection other than the one it began on.

A batch's savepoints give new objects their ids early; after a server crash
the restarted server hands those ids out again.  The guard refuses a commit
whose client reconnected since the guard joined (the reconnection is
simulated here by its one observable effect, the client's connection
generation; the fault suite restarts and kills real servers).
"""

from __future__ import annotations

import pytest
import transaction
from persistent.mapping import PersistentMapping

import zasync
from zasync.storage.fresh_oids import (
    ReconnectedDuringTransaction,
    SameConnectionGuard,
    connection_generation,
)


@pytest.fixture
def zeo_db(zeo_uri):
    opened = zasync.open_database(zeo_uri)
    yield opened.db
    opened.close()


def test_a_commit_after_a_reconnection_is_refused_and_stores_nothing(zeo_db):
    tm = transaction.TransactionManager()
    conn = zeo_db.open(transaction_manager=tm)
    guard = SameConnectionGuard(zeo_db.storage, tm)
    guard.join(tm.get())
    conn.root()["made"] = PersistentMapping(kind="new")
    tm.savepoint(optimistic=True)  # the new object gets its id here
    zeo_db.storage._connection_generation += 1  # what a reconnection does
    with pytest.raises(ReconnectedDuringTransaction, match="not committed"):
        tm.commit()
    tm.abort()
    assert "made" not in conn.root()
    conn.close()


def test_without_a_reconnection_the_guarded_commit_and_its_savepoints_work(zeo_db):
    tm = transaction.TransactionManager()
    conn = zeo_db.open(transaction_manager=tm)
    guard = SameConnectionGuard(zeo_db.storage, tm)
    guard.join(tm.get())
    conn.root()["kept"] = PersistentMapping(kind="kept")
    savepoint = tm.savepoint(optimistic=True)
    conn.root()["dropped"] = PersistentMapping(kind="dropped")
    savepoint.rollback()
    tm.commit()
    assert sorted(conn.root()) == ["kept"]
    conn.close()


def test_other_storages_are_not_guarded(zasync_db):
    assert connection_generation(zasync_db.storage) is None
    tm = transaction.TransactionManager()
    guard = SameConnectionGuard(zasync_db.storage, tm)
    guard.join(tm.get())
    assert tm.get()._resources == []
