"""Start zasync with a Zope instance, and stop it with the process.

:func:`database_opened` is a subscriber of ``IDatabaseOpenedWithRoot``
(registered by this package's ``configure.zcml``), which Zope notifies once
its databases are open and its ZCML is loaded.  It installs the configured
queues in the queue database and, on a worker instance (``worker on``),
starts a dispatcher on it, with the UUID kept in ``uuid-file``.  The
dispatcher's threads run jobs inside the Zope process: with the component
registry, the catalog and the user folders of the site.  When the process
exits, the dispatcher stops gracefully (claims stop, claimed jobs go back,
running jobs get ``grace`` seconds).
"""

from __future__ import annotations

import atexit
import logging
from typing import Any

import transaction

from zasync.errors import ConfigurationError
from zasync.identity import load_or_create_uuid_file, set_process_uuid
from zasync.model.queue import install_queues
from zasync.runtime.dispatcher import Dispatcher
from zasync.zope import settings as settings_module

log = logging.getLogger("zasync.zope")

#: The dispatcher this process runs, once started.
_running: Dispatcher | None = None


def queue_database(db: Any, name: str | None) -> Any:
    """The database that holds the queues: ``db`` itself, or the one named among its peers."""
    if name is None or name == db.database_name:
        return db
    databases = getattr(db, "databases", {})
    if name not in databases:
        raise ConfigurationError(
            f"<product-config zasync> database: no database named {name!r}; "
            f"this instance has {', '.join(sorted(databases)) or 'none'}"
        )
    return databases[name]


def database_opened(event: Any) -> None:
    """Install the queues and, on a worker instance, start the dispatcher."""
    start(event.database, settings_module.load())


def start(db: Any, settings: settings_module.ZopeSettings) -> Dispatcher | None:
    """What :func:`database_opened` does, with the settings given (tests call it)."""
    global _running
    target = queue_database(db, settings.database)
    tm = transaction.TransactionManager()
    conn = target.open(transaction_manager=tm)
    try:
        tm.begin()
        install_queues(conn, *settings.queues)
        tm.commit()
    finally:
        tm.abort()
        conn.close()
    if not settings.worker:
        log.info("zasync: queues %s ready; this instance puts jobs only", list(settings.queues))
        return None
    uuid = load_or_create_uuid_file(settings.uuid_file) if settings.uuid_file is not None else None
    if uuid is not None:
        set_process_uuid(uuid)  # the jobs this instance puts name it as their assigner
    dispatcher = Dispatcher(
        target,
        uuid=uuid,
        poll_interval=settings.poll_interval,
        ping_interval=settings.ping_interval,
        death_interval=settings.death_interval,
        agents=settings.agent_specs(),
    )
    dispatcher.activate()
    _running = dispatcher
    atexit.register(stop, settings.grace)
    log.info(
        "zasync: worker %s started in this Zope instance (%s)",
        dispatcher.UUID,
        ", ".join(f"{a.queue!r}/{a.name}: {a.threads} threads" for a in settings.agent_specs()),
    )
    return dispatcher


def stop(grace: float = 30.0) -> bool:
    """Stop this process's dispatcher gracefully, if it runs; True if its jobs finished in time."""
    global _running
    dispatcher, _running = _running, None
    if dispatcher is None or not dispatcher.activated:
        return True
    log.info("zasync: stopping worker %s (up to %g s for running jobs)", dispatcher.UUID, grace)
    return dispatcher.stop(grace)


def running() -> Dispatcher | None:
    """The dispatcher started in this process, or None."""
    return _running
