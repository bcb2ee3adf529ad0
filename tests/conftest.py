"""Fixtures: real databases (in memory and FileStorage), a pinned clock, no sleeping."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import transaction
import ZODB
import zope.event

import zasync
from zasync import clock, identity
from zasync.model import retry, tx

START = datetime.datetime(2006, 8, 10, 15, 44, 22, 211, tzinfo=datetime.UTC)


# The suite's fixtures are the ones zasync ships to users (zasync.testing.pytest_plugin),
# under short names; tests/unit runs them on both storages (see tests/unit/conftest.py).


@pytest.fixture
def db(zasync_bare_db: ZODB.DB) -> ZODB.DB:
    """A database with nothing installed."""
    return zasync_bare_db


@pytest.fixture
def conn(db: ZODB.DB) -> Iterator[Any]:
    connection = db.open()
    yield connection
    transaction.abort()
    connection.close()


@pytest.fixture
def root(conn: Any) -> Any:
    return conn.root()


@pytest.fixture
def queues(conn: Any) -> Any:
    result = zasync.install_queues(conn)
    transaction.commit()
    return result


@pytest.fixture
def queue(queues: Any) -> Any:
    return queues[""]


@pytest.fixture
def now() -> Iterator[datetime.datetime]:
    """Pin the clock at the seeds' doctest time."""
    clock.set_now(START)
    yield START
    clock.reset_now()


@pytest.fixture(autouse=True)
def sleeps() -> Iterator[list[float]]:
    """Record backoff sleeps instead of sleeping."""
    recorded: list[float] = []
    clock.set_sleep(recorded.append)
    yield recorded
    clock.set_sleep(None)


_LOGGERS = ("", "zasync", "zasync.events", "zasync.trace", "zasync.conflicts")


@pytest.fixture(autouse=True)
def _reset_process_state() -> Iterator[None]:
    # The CLI, run in-process by CliRunner, configures logging for a user's
    # terminal: restore it, or later tests' caplog misses records.
    levels = {name: logging.getLogger(name).level for name in _LOGGERS}
    handlers = list(logging.getLogger().handlers)
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    clock.reset_now()
    clock.forget_offset()
    retry.set_default_retry_policy(None)
    retry.set_callback_retry_policy(None)
    retry._named.clear()
    retry._named.update(retry.BUILTIN_NAMES)
    tx._failure_logs.clear()
    identity.set_process_uuid(None)


@pytest.fixture
def events() -> Iterator[list[Any]]:
    """Collect zope.event notifications."""
    seen: list[Any] = []
    zope.event.subscribers.append(seen.append)
    yield seen
    zope.event.subscribers.remove(seen.append)


# -- the engines many machines share: a ZEO server and PostgreSQL --------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The PostgreSQL server for the session (see tests/pgserver.py)."""
    import pgserver

    uri, started = pgserver.server_uri()
    yield uri
    if started is not None:
        started.remove()


@pytest.fixture
def zeo_uri(tmp_path: Any) -> Iterator[str]:
    """A fresh ZEO server of the test's own (the ZEO package's ``runzeo``) on loopback."""
    from workers import ZEOServer, free_port

    server = ZEOServer(tmp_path / "zeo.fs", free_port(), tmp_path / "zeo.log")
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture(params=["zeo", "postgres"])
def engine_uri(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A fresh, empty database on each shared engine: its own ZEO server, or a PostgreSQL database."""
    if request.param == "zeo":
        yield request.getfixturevalue("zeo_uri")
    else:
        import pgserver

        with pgserver.fresh_database(request.getfixturevalue("postgres_server")) as uri:
            yield uri


# The Zope tier needs Zope, which lives in an environment of its own (make test-zope,
# which `make test` runs after this suite): elsewhere its folders are not collected.
try:
    import Zope2  # noqa: F401
except ImportError:
    collect_ignore = ["zope", "zope_site_jobs"]
