"""Opening databases by URI, and the embedded file shared with other processes."""

from __future__ import annotations

import logging

import pytest
import transaction

import zasync
from zasync.storage.database import default_uri, file_path, open_database
from zasync.storage.embedded import is_served
from zasync.storage.watch import commit_watcher

from processes import run_python


def test_memory_and_file_uris(tmp_path):
    with open_database("memory://") as mem:
        assert mem.kind == "memory"
        conn = mem.db.open()
        zasync.install_queues(conn)
        transaction.commit()
        conn.close()
    path = tmp_path / "sub" / "Data.fs"
    with open_database(f"file://{path}") as opened:
        assert opened.kind == "file" and opened.path == str(path) and opened.serving
    assert path.exists()
    with open_database(f"file://{path}", serve=False) as alone:
        assert alone.kind == "file" and alone.server is None and not alone.serving
    with open_database(str(path)) as again:  # a bare path is a file URI
        assert again.kind == "file"


def test_default_uri(monkeypatch):
    monkeypatch.delenv("ZASYNC_DB", raising=False)
    assert default_uri() == "file://var/zasync/Data.fs"
    monkeypatch.setenv("ZASYNC_DB", "memory://")
    assert default_uri() == "memory://"
    assert file_path("file:///a/b.fs") == "/a/b.fs"
    assert file_path("zeo://localhost:1") is None


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(zasync.ZasyncError, match="cannot open 'nosuch://x'"):
        open_database("nosuch://x")


def test_what_is_not_a_database_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "adir").mkdir()
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "empty.fs").write_bytes(b"")
    refusals = [
        (str(tmp_path / "adir"), {}, "is a directory, not a database file"),
        (str(tmp_path / "notes.txt"), {}, "is not a database file"),
        ("/dev/null", {}, "/dev/null is not a regular file"),
        (str(tmp_path / "empty.fs"), {"create": False}, "is an empty file"),
        (str(tmp_path / "missing" / "Data.fs"), {"create": False}, "no database at"),
        ("zeo://127.0.0.1:99999", {}, "Port out of range"),
    ]
    for uri, options, message in refusals:
        with pytest.raises(zasync.ZasyncError, match=message):
            open_database(uri, **options)
    # No lock, index or scratch file beside them, no folder made.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "empty.fs", "notes.txt"]
    assert list((tmp_path / "adir").iterdir()) == []


def test_an_unreachable_zeo_server_is_given_up_after_connect_timeout():
    from workers import free_port

    uri = f"zeo://127.0.0.1:{free_port()}"
    with pytest.raises(zasync.ZasyncError, match=r"cannot open 'zeo://.*no ZEO server answered"):
        open_database(uri, connect_timeout=1)


def test_passwords_are_not_repeated_in_errors():
    from zasync.storage.database import redact

    assert redact("postgresql://me:s3cret@db:5432/q") == "postgresql://me:***@db:5432/q"
    assert redact("postgresql://me@db/q") == "postgresql://me@db/q"
    assert redact("zeo://db:8100") == "zeo://db:8100"


def test_served_file_is_shared_with_other_processes(tmp_path):
    path = tmp_path / "Data.fs"
    opened = open_database(f"file://{path}", serve=True)
    try:
        assert is_served(path)
        external = []
        commit_watcher(opened.db).subscribe(lambda tid, oids, local: external.append(local))
        conn = opened.db.open()
        queue = zasync.install_queues(conn)[""]
        conn.root()["note"] = "from the worker"
        transaction.commit()
        assert external == [True]

        out = run_python(
            f"""
            import transaction, zasync, support
            from zasync.storage.database import open_database
            with open_database("file://{path}") as opened:
                assert opened.kind == "file-client", opened.kind
                conn = opened.db.open()
                print(conn.root()["note"])
                job = zasync.get_queue(conn).put(support.mock_work)
                transaction.commit()
                print(int.from_bytes(job._p_oid, "big"))
            """
        )
        note, oid = out.splitlines()
        assert note == "from the worker"
        assert False in external  # the client's commit reached this process's watcher
        transaction.begin()
        assert [int.from_bytes(j._p_oid, "big") for j in queue] == [int(oid)]
        conn.close()
    finally:
        opened.close()
    assert not is_served(path)


def test_file_locked_by_a_process_that_does_not_serve_it(tmp_path):
    path = tmp_path / "Data.fs"
    with open_database(f"file://{path}", serve=False):
        code = f"""
            import zasync.storage.database as d
            d._LOCK_WAIT_SECONDS = 0.3
            try:
                d.open_database("file://{path}")
            except d.ZasyncError as e:
                print(e)
            """
        assert "is held by a process that does not share it" in run_python(code)


def test_clients_see_the_workers_commits_in_order(tmp_path):
    """The worker commits without pause while a client connects, commits and reads."""
    import threading

    import persistent

    path = tmp_path / "Data.fs"
    opened = open_database(f"file://{path}", serve=True)
    stop = threading.Event()
    try:
        conn = opened.db.open(transaction_manager=transaction.TransactionManager())
        tm = conn.transaction_manager
        root = conn.root()
        root["counter"] = persistent.mapping.PersistentMapping(n=0)
        tm.commit()

        def keep_committing():
            while not stop.is_set():
                root["counter"]["n"] += 1
                tm.commit()

        writer = threading.Thread(target=keep_committing)
        writer.start()
        import subprocess
        import sys

        from processes import python_env

        code = f"""
            import transaction
            from zasync.storage.database import open_database
            for attempt in range(8):
                with open_database("file://{path}") as opened:
                    conn = opened.db.open()
                    conn.root()["client"] = attempt
                    transaction.commit()
                    import time
                    seen = []
                    deadline = time.monotonic() + 240
                    while len(set(seen)) < 3 and time.monotonic() < deadline:
                        transaction.begin()
                        seen.append(conn.root()["counter"]["n"])
                        time.sleep(0.001)
                    assert seen == sorted(seen) and len(set(seen)) >= 3, seen
                    conn.close()
            print("ok")
            """
        import textwrap

        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=120,
            env=python_env(),
        )
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
        assert "must be greater" not in done.stderr, done.stderr
        assert "failed" not in done.stderr, done.stderr
    finally:
        stop.set()
        writer.join(30)
        opened.close()


def test_a_client_commit_is_answered_with_its_own_id_when_the_worker_commits_next(tmp_path):
    """The worker commits between a client's commit and ZEO's reply to it.

    ZEO answered a client's commit with the storage's newest id, which was then
    the worker's: the client filed its objects under that id and refused the
    worker's invalidation for it, keeping a stale copy for good.
    """
    import threading

    from persistent.mapping import PersistentMapping

    from zasync.testing import wait_for

    path = tmp_path / "Data.fs"
    served = open_database(f"file://{path}", serve=True)
    client = None
    try:
        worker_tm = transaction.TransactionManager()
        worker_root = served.db.open(transaction_manager=worker_tm).root()
        worker_root["n"] = PersistentMapping(v=0)
        worker_tm.commit()
        storage = served.db.storage
        real_finish = storage.tpc_finish
        worker_tids = []

        def worker_commits():
            worker_root["n"]["v"] += 1
            worker_tm.commit()
            worker_tids.append(worker_root["n"]._p_serial)

        def tpc_finish(txn, f=None):
            tid = real_finish(txn, f)
            here = threading.current_thread()
            if here is not threading.main_thread() and here.name != "worker":  # the server's
                committer = threading.Thread(target=worker_commits, name="worker")
                committer.start()
                committer.join()
            return tid

        client = open_database(f"file://{path}")
        assert client.kind == "file-client"
        client_tm = transaction.TransactionManager()
        client_root = client.db.open(transaction_manager=client_tm).root()
        assert client_root["n"]["v"] == 0
        storage.tpc_finish = tpc_finish
        client_root["mine"] = mine = PersistentMapping()
        client_tm.commit()
        storage.tpc_finish = real_finish
        assert len(worker_tids) == 1
        client_tid = mine._p_serial
        assert client_tid < worker_tids[0]
        assert client.db.storage.lastTransaction() in (client_tid, worker_tids[0])

        def fresh():
            client_tm.begin()
            return client_root["n"]["v"] == 1

        wait_for(fresh, timeout=240, message="the client kept a stale copy")
    finally:
        if client is not None:
            client.close()
        served.close()


def test_relstorage_reconnects_are_one_line_warnings(caplog):
    from zasync.storage import database

    database._quiet_reconnect_tracebacks()
    database._quiet_reconnect_tracebacks()  # once is enough: not twice the filter
    reconnects = logging.getLogger("relstorage.adapters.connections")
    assert sum(isinstance(f, database._ReconnectTracebacks) for f in reconnects.filters) == 1
    try:
        raise OSError("connection pointer is NULL")
    except OSError as error:
        with caplog.at_level(logging.WARNING, "relstorage.adapters.connections"):
            reconnects.warning(
                "Disconnected (%s) when running %s; attempting reconnect", error, "f", exc_info=True
            )
            reconnects.warning("something else", exc_info=True)
    quieted, other = caplog.records
    assert "attempting reconnect" in quieted.getMessage() and quieted.exc_info is None
    assert other.exc_info is not None  # other warnings keep their traceback
