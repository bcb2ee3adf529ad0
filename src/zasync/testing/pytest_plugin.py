"""pytest fixtures for testing code that puts and runs zasync jobs.

Loaded automatically when zasync is installed:

* ``zasync_storage``: the storage the database uses: a fresh FileStorage in a
  temporary directory (override this fixture to test on another storage);
* ``zasync_bare_db``: a database on it, with nothing installed;
* ``zasync_db``: the same database with zasync's queues installed;
* ``zasync_conn``: a connection to it (the test thread's transaction);
* ``zasync_queue``: its default queue;
* ``zasync_dispatcher``: a running dispatcher on it, stopped after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import transaction
import ZODB
from ZODB.FileStorage import FileStorage

from zasync.model.queue import install_queues
from zasync.testing import running_dispatcher


@pytest.fixture
def zasync_storage(tmp_path: Any) -> Any:
    """A fresh FileStorage in the test's temporary directory."""
    return FileStorage(str(tmp_path / "zasync-test.fs"))


@pytest.fixture
def zasync_bare_db(zasync_storage: Any) -> Iterator[Any]:
    """A database on ``zasync_storage`` with nothing installed; closed after the test."""
    db = ZODB.DB(zasync_storage)
    yield db
    transaction.abort()
    db.close()


@pytest.fixture
def zasync_db(zasync_bare_db: Any) -> Any:
    """``zasync_bare_db`` with zasync's queues installed."""
    conn = zasync_bare_db.open()
    install_queues(conn)
    transaction.commit()
    conn.close()
    return zasync_bare_db


@pytest.fixture
def zasync_conn(zasync_db: Any) -> Iterator[Any]:
    """A connection to ``zasync_db`` using the test thread's transaction."""
    conn = zasync_db.open()
    yield conn
    transaction.abort()
    conn.close()


@pytest.fixture
def zasync_queue(zasync_conn: Any) -> Any:
    """The default queue, in ``zasync_conn``."""
    from zasync.model.queue import get_queue

    return get_queue(zasync_conn)


@pytest.fixture
def zasync_dispatcher(zasync_db: Any) -> Iterator[Any]:
    """A running dispatcher (3 threads, 0.5 s poll interval) on ``zasync_db``."""
    with running_dispatcher(zasync_db) as dispatcher:
        yield dispatcher
