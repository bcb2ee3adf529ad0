"""A ZEO client never stores a new object under an id it gave out before a reconnection.

A savepoint (a batch of jobs takes one per job; job code may take its own)
gives new objects their ids long before the commit.  If the client lost its
server meanwhile and reconnected to a restarted one, the server hands those
ids out again: storing under them would overwrite another process's object.
The client refuses, as a disconnection, so the work is done again.  (The
reconnection is simulated here by its one observable effect on the client,
its connection generation; the fault suite kills and restarts real servers.)
"""

from __future__ import annotations

import pytest
import transaction
from persistent.mapping import PersistentMapping
from ZEO.Exceptions import ClientDisconnected

import zasync


@pytest.fixture
def zeo_db(zeo_uri):
    opened = zasync.open_database(zeo_uri)
    yield opened.db
    opened.close()


def test_a_new_object_given_its_id_before_a_reconnection_is_not_stored(zeo_db):
    tm = transaction.TransactionManager()
    conn = zeo_db.open(transaction_manager=tm)
    conn.root()["made"] = PersistentMapping(kind="new")
    tm.savepoint()  # the new object gets its id here
    zeo_db.storage._connection_generation += 1  # what a reconnection does
    with pytest.raises(ClientDisconnected, match="before the connection was lost"):
        tm.commit()
    tm.abort()
    assert "made" not in conn.root()
    # Done again, the object gets a fresh id and is stored.
    conn.root()["made"] = PersistentMapping(kind="new")
    tm.commit()
    assert conn.root()["made"]["kind"] == "new"
    conn.close()


def test_without_a_reconnection_savepoints_and_commits_work(zeo_db):
    tm = transaction.TransactionManager()
    conn = zeo_db.open(transaction_manager=tm)
    conn.root()["kept"] = PersistentMapping(kind="kept")
    savepoint = tm.savepoint()
    conn.root()["dropped"] = PersistentMapping(kind="dropped")
    savepoint.rollback()
    tm.commit()
    assert sorted(conn.root()) == ["kept"]
    conn.close()
