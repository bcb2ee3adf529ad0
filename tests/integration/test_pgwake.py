"""PostgreSQL wakes a worker when RelStorage commits (NOTIFY from a trigger), no polling needed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import transaction
from persistent.mapping import PersistentMapping

import zasync
from zasync.runtime.dispatcher import Dispatcher
from zasync.storage.pgwake import CommitListener, relstorage_dsn
from zasync.testing import running_dispatcher, wait_for, wait_for_result


@pytest.fixture
def pg_db(postgres_server: str) -> Iterator[object]:
    import pgserver

    with pgserver.fresh_database(postgres_server) as uri:
        opened = zasync.open_database(uri)
        try:
            yield opened.db
        finally:
            opened.close()


def test_a_commit_from_another_connection_is_notified_and_silence_is_not(pg_db):
    dsn = relstorage_dsn(pg_db.storage)
    assert dsn is not None
    listener = CommitListener(dsn)
    try:
        assert listener.wait(0.01)  # connecting: installs the trigger, says "look now"
        assert not listener.wait(0.05)  # nothing committed: the whole timeout passes
        tm = transaction.TransactionManager()
        conn = pg_db.open(transaction_manager=tm)
        conn.root()["x"] = PersistentMapping(n=1)
        tm.commit()
        started = time.monotonic()
        assert listener.wait(30.0)
        assert time.monotonic() - started < 30.0
        conn.close()
    finally:
        listener.close()


def test_installing_twice_keeps_one_trigger(pg_db):
    first, second = (
        CommitListener(relstorage_dsn(pg_db.storage)),
        CommitListener(relstorage_dsn(pg_db.storage)),
    )
    try:
        assert first.wait(0.01) and second.wait(0.01)
        with first._conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'zasync_commit_notify'")
            assert cursor.fetchone()[0] == 1
    finally:
        first.close()
        second.close()


def test_a_put_wakes_a_relstorage_worker_long_before_its_poll_interval(pg_db, monkeypatch):
    conn = pg_db.open()
    queue = zasync.install_queues(conn)[""]
    transaction.commit()
    # Polls every hour and looks for changes every minute: only a notification is
    # fast (the margin below is half that minute, not a measure of speed).
    monkeypatch.setattr(Dispatcher, "change_poll_interval", 60.0)
    with running_dispatcher(pg_db, poll_interval=3600.0):
        wait_for(lambda: bool(queue.dispatchers), timeout=60)
        job = queue.put(zasync.Job(int, "7"))
        transaction.commit()
        put_at = time.monotonic()
        wait_for_result(job, timeout=60)
        assert job.result == 7
        assert time.monotonic() - put_at < 30.0
    conn.close()


def test_other_storages_have_no_dsn(zasync_db):
    assert relstorage_dsn(zasync_db.storage) is None
