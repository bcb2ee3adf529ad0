"""Files, directories and sockets on a shared machine: private modes, no shared socket names."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import transaction
from ZODB.FileStorage import FileStorage

import zasync
from zasync.identity import load_or_create_uuid_file
from zasync.storage.database import open_database
from zasync.storage.embedded import is_served, socket_path

from processes import run_python
from workers import WorkerProcess

OTHER_UID = 65534  # nobody: another user of the machine


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A private directory with a short path (pytest's tmp_path is too long for a socket)."""
    path = tempfile.mkdtemp(prefix="zs-")
    try:
        yield Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


@contextlib.contextmanager
def foreign_listener(address: str) -> Iterator[socket.socket]:
    """A socket another user listens on at ``address`` (the file owned by uid 65534)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(8)
    os.chown(address, OTHER_UID, OTHER_UID)
    listener.setblocking(False)
    try:
        yield listener
    finally:
        listener.close()


def was_contacted(listener: socket.socket) -> bool:
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def kind_seen_by_another_process(path: object) -> str:
    """How a new process opens the database at ``path`` (``file-client``: through the socket)."""
    out = run_python(
        f"""
        from zasync.storage.database import open_database
        with open_database("file://{path}") as opened:
            print(opened.kind)
        """
    )
    return out.strip()


def test_database_files_sidecars_and_new_directories_are_private(tmp_path):
    path = tmp_path / "new" / "sub" / "Data.fs"
    with umask(0o022):  # the usual umask: 0644 files, 0755 directories
        opened = open_database(f"file://{path}", serve=True)
        try:
            conn = opened.db.open()
            zasync.install_queues(conn)
            transaction.commit()
            conn.root()["note"] = "an older revision of the root, for pack to drop"
            transaction.commit()
            assert mode(socket_path(path)) == 0o600
            conn.close()
            load_or_create_uuid_file(f"{path}.uuid")
            opened.db.pack()
            assert mode(f"{path}.old") == 0o600 and mode(path) == 0o600  # Data.fs is the .pack file
            opened.db.pack()  # nothing left to pack: no empty .pack file stays behind
        finally:
            opened.close()
    assert mode(tmp_path / "new") == 0o700 and mode(tmp_path / "new" / "sub") == 0o700
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == [
        "Data.fs",
        "Data.fs.index",
        "Data.fs.lock",
        "Data.fs.tmp",
        "Data.fs.uuid",
    ]
    for name in names:
        assert mode(path.parent / name) == 0o600, name


def test_an_existing_world_readable_database_is_tightened(tmp_path):
    path = tmp_path / "Data.fs"
    with umask(0o022):
        FileStorage(str(path)).close()  # as an older zasync left it
        (tmp_path / "Data.fs.uuid").write_text("5f0c1b42-3f3e-4a0c-9d43-1cb0d1c2b3a4\n")
    assert mode(path) == 0o644
    with open_database(f"file://{path}"):
        pass
    load_or_create_uuid_file(tmp_path / "Data.fs.uuid")
    for name in ("Data.fs", "Data.fs.index", "Data.fs.lock", "Data.fs.tmp", "Data.fs.uuid"):
        assert mode(tmp_path / name) == 0o600, name


def test_zasync_file_mode_shares_with_a_group_and_a_stricter_umask_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("ZASYNC_FILE_MODE", "0640")
    shared = tmp_path / "shared" / "Data.fs"
    with umask(0o022), open_database(f"file://{shared}"):
        pass
    assert mode(shared.parent) == 0o750
    assert mode(shared) == 0o640 and mode(f"{shared}.index") == 0o640
    strict = tmp_path / "strict" / "Data.fs"
    with umask(0o077), open_database(f"file://{strict}"):
        pass
    assert mode(strict.parent) == 0o700 and mode(strict) == 0o600
    monkeypatch.setenv("ZASYNC_FILE_MODE", "0755")
    with pytest.raises(zasync.ZasyncError, match="ZASYNC_FILE_MODE='0755'"):
        open_database(f"file://{tmp_path / 'bad' / 'Data.fs'}")


def test_a_worker_process_keeps_its_files_private(tmp_path):
    path = tmp_path / "db" / "Data.fs"
    worker = WorkerProcess(f"file://{path}", tmp_path / "worker.log", "--threads", "1")
    try:
        worker.wait_for_log("worker ")
        address = socket_path(path)
        assert mode(address) == 0o600 and mode(path.parent) == 0o700
        for name in ("Data.fs", "Data.fs.lock", "Data.fs.tmp", "Data.fs.index", "Data.fs.uuid"):
            assert mode(path.parent / name) == 0o600, name
    finally:
        worker.stop()


def test_long_paths_get_a_socket_in_a_private_directory_not_a_shared_name(
    tmp_path, short_dir, monkeypatch
):
    monkeypatch.setenv("ZASYNC_RUNTIME_DIR", str(short_dir / "run"))  # workers and clients
    long = tmp_path / ("x" * 120) / "Data.fs"
    address = socket_path(long)
    directory = os.path.dirname(address)
    assert len(address.encode()) <= 100 and address.endswith(".sock")
    assert directory == str(short_dir / "run")
    st = os.lstat(directory)
    assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o700
    assert socket_path(long) == address
    # The name the old version used in /tmp, taken first by another user: no effect.
    digest = hashlib.sha1(str(long).encode()).hexdigest()[:16]
    legacy = os.path.join(tempfile.gettempdir(), f"zasync-{digest}.sock")
    with foreign_listener(legacy) as squatter:
        opened = open_database(f"file://{long}", serve=True)
        try:
            assert opened.server is not None and opened.server.address == address
            assert kind_seen_by_another_process(long) == "file-client"
        finally:
            opened.close()
        assert not was_contacted(squatter)
    os.unlink(legacy)


def test_a_runtime_directory_taken_by_another_user_is_skipped(tmp_path, short_dir, monkeypatch):
    long = tmp_path / ("y" * 120) / "Data.fs"
    taken = short_dir / "taken"
    taken.mkdir(mode=0o700)
    os.chown(taken, OTHER_UID, OTHER_UID)
    home = short_dir / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("ZASYNC_RUNTIME_DIR", str(taken))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(home))
    assert os.path.dirname(socket_path(long)) == str(home / ".cache" / "zasync")
    # Every candidate unusable: a clear error that says what to do.
    cache = short_dir / "cache"
    (cache / "zasync").mkdir(parents=True)
    os.chmod(cache / "zasync", 0o777)  # others can write to it
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    tmp_candidate = short_dir / "t" / f"zasync-{os.geteuid()}"
    tmp_candidate.mkdir(parents=True, mode=0o700)
    os.chown(tmp_candidate, OTHER_UID, OTHER_UID)
    monkeypatch.setattr(tempfile, "tempdir", str(short_dir / "t"))
    with pytest.raises(zasync.ZasyncError, match="no private directory for the socket") as e:
        socket_path(long)
    message = str(e.value)
    assert "owned by uid 65534" in message and "others can write" in message
    assert "set ZASYNC_RUNTIME_DIR" in message


def test_a_database_in_a_directory_others_can_write_gets_its_socket_elsewhere(
    tmp_path, short_dir, monkeypatch
):
    monkeypatch.setenv("ZASYNC_RUNTIME_DIR", str(short_dir / "run"))
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    address = socket_path(shared / "Data.fs")
    assert os.path.dirname(address) == str(short_dir / "run") and mode(short_dir / "run") == 0o700


def test_a_client_refuses_a_socket_of_another_user(tmp_path):
    path = tmp_path / "Data.fs"
    opened = open_database(f"file://{path}", serve=True)
    try:
        address = socket_path(path)
        assert is_served(path)
        os.unlink(address)  # another user (who could write here) replaces the worker's socket
        with foreign_listener(address) as impostor:
            with pytest.raises(zasync.ZasyncError, match=r"refusing to connect to .* uid 65534"):
                open_database(f"file://{path}")
            assert not was_contacted(impostor)
    finally:
        opened.close()


def test_a_worker_replaces_a_stale_socket_of_another_user(tmp_path):
    path = tmp_path / "Data.fs"
    address = socket_path(path)
    with foreign_listener(address) as squatter:
        opened = open_database(f"file://{path}", serve=True)
        try:
            assert os.lstat(address).st_uid == os.geteuid() and mode(address) == 0o600
            assert kind_seen_by_another_process(path) == "file-client"
        finally:
            opened.close()
        assert not was_contacted(squatter)


def test_log_lines_carry_a_prefix_of_large_arguments_and_results(zasync_db, zasync_conn, caplog):
    import logging
    import operator

    from zasync.testing import running_dispatcher, wait_for_result

    secret_tail = "END-OF-A-LONG-PRIVATE-ARGUMENT"
    big = "x" * 100_000 + secret_tail
    queue = zasync.get_queue(zasync_conn)
    job = queue.put(
        zasync.Job(operator.add, big, "!"),
    )
    many = queue.put(zasync.Job(sorted, list(range(100_000))))
    transaction.commit()
    assert len(repr(job)) <= 1000 and secret_tail not in repr(job)
    assert len(repr(many)) <= 1000
    with (
        caplog.at_level(logging.DEBUG, logger="zasync"),
        running_dispatcher(zasync_db, poll_interval=0.1),
    ):
        assert wait_for_result(job) == big + "!"
        assert len(wait_for_result(many)) == 100_000
    lines = [r.getMessage() for r in caplog.records]
    assert any("succeeded with result" in line for line in lines)
    assert any("starting in thread" in line for line in lines)
    for line in lines:
        assert len(line) < 3000 and secret_tail not in line, line[:200]
