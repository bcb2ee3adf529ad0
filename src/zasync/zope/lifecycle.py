"""Start zasync with a Zope instance, and stop it with the process.

:func:`database_opened` is a subscriber of ``IDatabaseOpenedWithRoot``
(registered by this package's ``configure.zcml``), which Zope notifies once
its databases are open and its ZCML is loaded.  It installs the configured
queues in the queue database and, on a worker instance (``worker on``),
starts a dispatcher on it, with the UUID kept in ``uuid-file``.  The
dispatcher's threads run jobs inside the Zope process: with the component
registry, the catalog and the user folders of the site.  When the process
exits, the dispatcher stops gracefully (claims stop, claimed jobs go back,
running jobs get ``grace`` seconds), at exit and on SIGTERM.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
from typing import Any

import transaction

from zasync.errors import ConfigurationError
from zasync.identity import load_or_create_uuid_file, set_process_uuid
from zasync.model.queue import install_queues
from zasync.model.tx import never_fail
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
    # The queues named and those the agents serve; instances starting together on a
    # fresh database conflict here, and retry.
    names = list(dict.fromkeys([*settings.queues, *(a.queue for a in settings.agent_specs())]))
    tm = transaction.TransactionManager()
    conn = target.open(transaction_manager=tm)
    try:
        tm.begin()
        never_fail(lambda: install_queues(conn, *names), "installing zasync's queues", tm)
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
    _stop_on_sigterm(settings.grace)
    log.info(
        "zasync: worker %s started in this Zope instance (%s)",
        dispatcher.UUID,
        ", ".join(f"{a.queue!r}/{a.name}: {a.threads} threads" for a in settings.agent_specs()),
    )
    return dispatcher


def _stop_on_sigterm(grace: float) -> None:
    """Stop gracefully on SIGTERM too (what containers and service managers send).

    Only where nothing else handles it (Zope's WSGI servers do not), and only
    from the main thread, which signal handlers need.  The signal's default
    action, ending the process, follows the stop.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        stop(grace)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)


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
