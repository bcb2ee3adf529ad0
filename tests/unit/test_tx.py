"""Internal units retry real conflicts and count them where caught and by class."""

from __future__ import annotations

import logging

import pytest
import transaction
from persistent.mapping import PersistentMapping
from ZODB.POSException import ConflictError

from zasync import _counters
from zasync.model.tx import (
    commit_in_fresh_connection,
    fresh_connection,
    never_fail,
    read_in_fresh_connection,
    try_transaction_five_times,
)


def _conflicting_unit(db, mine, theirs):
    """A unit that changes ``mine``; its first run meets a commit of ``theirs`` on the same object."""
    runs = []

    def unit():
        runs.append(1)
        mine.root()["shared"]["count"] += 1
        if len(runs) == 1:
            theirs.root()["shared"]["count"] += 10
            theirs.transaction_manager.commit()
        return len(runs)

    return unit


def _two_connections(db):
    setup = db.open()
    setup.root()["shared"] = PersistentMapping(count=0)
    transaction.commit()
    setup.close()
    return (
        db.open(transaction_manager=transaction.TransactionManager()),
        db.open(transaction_manager=transaction.TransactionManager()),
    )


def test_try_five_times_retries_a_real_conflict_and_counts_it_on_its_class(db):
    _counters.reset()
    mine, theirs = _two_connections(db)
    unit = _conflicting_unit(db, mine, theirs)
    assert try_transaction_five_times(unit, "test unit", mine.transaction_manager) == 2
    mine.transaction_manager.begin()
    assert mine.root()["shared"]["count"] == 11  # theirs, then mine on top: nothing lost
    assert _counters.conflict_counts() == {"bookkeeping": 1}
    assert _counters.conflicts_by_class() == {"persistent.mapping.PersistentMapping": 1}


def test_never_fail_counts_its_conflicts_too(db):
    _counters.reset()
    mine, theirs = _two_connections(db)
    unit = _conflicting_unit(db, mine, theirs)
    assert never_fail(unit, "test unit", mine.transaction_manager) == 2
    assert _counters.conflict_counts() == {"bookkeeping": 1}


def test_counters_start_empty_after_reset():
    _counters.count_conflict("job")
    _counters.reset()
    assert _counters.conflict_counts() == {} and _counters.conflicts_by_class() == {}


def test_a_failure_that_repeats_is_logged_once_a_minute(caplog):
    import transaction as transaction_module

    from zasync.model import tx

    tm = transaction_module.TransactionManager()

    def always_fails() -> None:
        raise RuntimeError("the disk is full, say")

    with caplog.at_level(logging.ERROR, "zasync.events"):
        for _ in range(50):  # fifty polls in a row meet the same failure
            tx.try_transaction_five_times(always_fails, "claiming in queue ''", tm)
        tx.try_transaction_five_times(always_fails, "pinging in queue ''", tm)
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if m.startswith("claiming in queue ''")]) == 1
    assert len([m for m in messages if m.startswith("pinging in queue ''")]) == 1

    caplog.clear()
    last, suppressed = tx._failure_logs["claiming in queue ''"]
    assert suppressed == 49
    tx._failure_logs["claiming in queue ''"] = (last - tx.FAILURE_LOG_INTERVAL, suppressed)
    with caplog.at_level(logging.ERROR, "zasync.events"):
        tx.try_transaction_five_times(always_fails, "claiming in queue ''", tm)
    [message] = [r.getMessage() for r in caplog.records]
    assert "(49 more such failures since the last report)" in message


def test_commit_in_fresh_connection_redoes_work_that_conflicted_and_notes_the_commit(db, root):
    root["counter"] = PersistentMapping(n=0)
    transaction.commit()
    calls = []

    def bump(conn, tm):
        calls.append(1)
        conn.root()["counter"]["n"] += 1
        if len(calls) == 1:  # someone else commits the same object meanwhile
            other_tm = transaction.TransactionManager()
            other = db.open(transaction_manager=other_tm)
            other.root()["counter"]["n"] += 10
            other_tm.commit()
            other.close()
        return conn.root()["counter"]["n"]

    assert commit_in_fresh_connection(db, bump, note="zasync: test bump") == 11
    assert len(calls) == 2
    transaction.begin()
    assert root["counter"]["n"] == 11
    records = db.storage.iterator(db.lastTransaction())
    try:
        (last,) = list(records)
    finally:
        getattr(records, "close", lambda: None)()
    assert last.description == b"zasync: test bump"


def test_commit_in_fresh_connection_gives_up_after_its_tries(db, root):
    root["counter"] = PersistentMapping(n=0)
    transaction.commit()

    def always_conflicts(conn, tm):
        conn.root()["counter"]["n"] += 1
        other_tm = transaction.TransactionManager()
        other = db.open(transaction_manager=other_tm)
        other.root()["counter"]["n"] += 1
        other_tm.commit()
        other.close()

    with pytest.raises(ConflictError):
        commit_in_fresh_connection(db, always_conflicts, tries=3)
    transaction.begin()
    assert root["counter"]["n"] == 3  # only the other connections' commits landed


def test_an_error_in_the_work_aborts_and_is_not_retried(db, root):
    calls = []

    def broken(conn, tm):
        calls.append(1)
        conn.root()["half"] = 1
        raise KeyError("nope")

    with pytest.raises(KeyError):
        commit_in_fresh_connection(db, broken)
    assert calls == [1]
    transaction.begin()
    assert "half" not in root


def test_fresh_connections_leave_the_callers_transaction_alone(db, root):
    root["mine"] = "uncommitted"
    root["seen"] = 1
    with fresh_connection(db) as (conn, _tm):
        conn.root()["theirs"] = 1  # left uncommitted: aborted at the end
    assert read_in_fresh_connection(db, lambda conn: "mine" in conn.root()) is False
    assert root["mine"] == "uncommitted"
    transaction.commit()
    assert read_in_fresh_connection(db, lambda conn: sorted(conn.root())) == ["mine", "seen"]
