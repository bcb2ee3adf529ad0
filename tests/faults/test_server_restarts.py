"""Object ids after a server crash: no two processes ever create objects under one id.

A ZEO server counts the object ids it hands out in memory only; killed and
restarted, it hands out again the ids its clients still hold in their
prefetched batch.  Each test makes a client hold such a batch, kills the
server with ``kill -9``, lets another client create objects on the restarted
server, and then has the first client create one more: it must commit, under
an id of its own.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest
import transaction
from persistent.mapping import PersistentMapping
from ZEO.Exceptions import ClientDisconnected

from zasync.storage.database import open_database

from workers import WorkerProcess, ZEOServer, free_port, wait_until

pytestmark = pytest.mark.slow


def _commit_new_objects(opened: Any, name: str, count: int) -> list[bytes]:
    """Create ``count`` objects under root[name] in one commit; return their oids."""
    tm = transaction.TransactionManager()
    conn = opened.db.open(tm)
    try:
        tm.begin()
        root = conn.root()
        made = [PersistentMapping({"by": name, "n": n}) for n in range(count)]
        for n, obj in enumerate(made):
            root[f"{name}-{n}"] = obj
        tm.commit()
        return [obj._p_oid for obj in made]
    finally:
        tm.abort()
        conn.close()


def _connected(opened: Any) -> bool:
    return bool(opened.db.storage.is_connected())


def _same_oids_are_never_reused(first: Any, second_uri: str) -> None:
    second = open_database(second_uri)
    try:
        theirs = _commit_new_objects(second, "second", 20)
    finally:
        second.close()
    wait_until(lambda: _connected(first), message="the first client never reconnected")
    mine = _commit_new_objects(first, "first", 3)
    assert not set(mine) & set(theirs)
    check = open_database(second_uri)
    try:
        conn = check.db.open()
        root = conn.root()
        assert [root[f"second-{n}"]["by"] for n in range(20)] == ["second"] * 20
        assert [root[f"first-{n}"]["by"] for n in range(3)] == ["first"] * 3
        conn.close()
    finally:
        check.close()


def test_a_zeo_client_drops_its_prefetched_oids_when_the_server_restarts(tmp_path):
    server = ZEOServer(tmp_path / "Data.fs", free_port(), tmp_path / "zeo.log")
    server.start()
    uri = f"{server.uri}?wait_timeout=30"
    first = open_database(uri)
    try:
        _commit_new_objects(first, "warm-up", 1)  # fetches a batch of oids, uses one
        server.kill()
        wait_until(lambda: not _connected(first), message="the client never saw the crash")
        server.start()
        _same_oids_are_never_reused(first, uri)
    finally:
        first.close()
        server.stop()


def test_a_savepoint_across_a_server_crash_never_gives_one_id_to_two_objects(tmp_path):
    """One transaction's savepoints on both sides of a crash (a batch of jobs does that).

    The object added before the crash holds an id the restarted server hands
    out again; the object added after it must not get that id too, and the
    first one must not be stored under it: the commit fails as a
    disconnection and stores nothing, and done again it stores both.
    """
    server = ZEOServer(tmp_path / "Data.fs", free_port(), tmp_path / "zeo.log")
    server.start()
    uri = f"{server.uri}?wait_timeout=30"
    first = open_database(uri)
    tm = transaction.TransactionManager()
    conn = first.db.open(tm)
    try:
        conn.root()["one"], conn.root()["two"] = PersistentMapping(), PersistentMapping()
        tm.commit()
        conn.root()["one"]["before"] = PersistentMapping(by="before")
        tm.savepoint()  # its id: the first one the server has not seen committed
        server.kill()
        wait_until(lambda: not _connected(first), message="the client never saw the crash")
        server.start()
        wait_until(lambda: _connected(first), message="the client never reconnected")
        # A job rolled back in between (as in a batch) turns what the savepoint
        # holds into ghosts: the object added before the crash leaves the
        # cache, which then cannot notice a second object under its id.
        rolled_back = tm.savepoint()
        conn.root()["rolled back"] = True
        rolled_back.rollback()
        gc.collect()
        conn.root()["two"]["after"] = PersistentMapping(by="after")
        tm.savepoint()
        before, after = conn.root()["one"]["before"], conn.root()["two"]["after"]
        assert (before["by"], after["by"]) == ("before", "after")
        assert before._p_oid != after._p_oid
        with pytest.raises(ClientDisconnected, match="before the connection was lost"):
            tm.commit()
        tm.abort()
        assert "before" not in conn.root()["one"] and "after" not in conn.root()["two"]
        conn.root()["one"]["before"] = PersistentMapping(by="before")
        conn.root()["two"]["after"] = PersistentMapping(by="after")
        tm.commit()
        check = open_database(uri)
        try:
            root = check.db.open().root()
            before, after = root["one"]["before"], root["two"]["after"]
            assert (before["by"], after["by"]) == ("before", "after")
        finally:
            check.close()
    finally:
        tm.abort()
        conn.close()
        first.close()
        server.stop()


def test_clients_of_a_restarted_embedded_worker_never_reuse_an_oid(tmp_path):
    path = tmp_path / "Data.fs"
    uri = f"file://{path}"
    worker = WorkerProcess(uri, tmp_path / "worker.log")
    try:
        worker.wait_for_log("serving")
        first = open_database(uri)
        assert first.kind == "file-client"
        try:
            _commit_new_objects(first, "warm-up", 1)
            worker.kill()
            worker = WorkerProcess(uri, tmp_path / "restarted.log")
            worker.wait_for_log("serving")
            _same_oids_are_never_reused(first, uri)
        finally:
            first.close()
    finally:
        worker.stop()
