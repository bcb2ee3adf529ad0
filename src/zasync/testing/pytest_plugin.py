"""pytest fixtures for testing code that puts and runs zasync jobs.

Loaded automatically when zasync is installed:

* ``zasync_db``: a fresh FileStorage database in a temporary directory, with
  the queues installed;
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
def zasync_db(tmp_path: Any) -> Iterator[Any]:
    """A FileStorage database with zasync's queues installed."""
    db = ZODB.DB(FileStorage(str(tmp_path / "zasync-test.fs")))
    conn = db.open()
    install_queues(conn)
    transaction.commit()
    conn.close()
    yield db
    transaction.abort()
    db.close()


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
