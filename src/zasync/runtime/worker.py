"""Running a worker process: what ``zasync worker`` does.

A worker opens the database (serving an embedded file to other local
processes), installs the queues, starts a dispatcher with the configured
agents, and runs until it is told to stop:

* the first SIGTERM or SIGINT stops gracefully: no more claims, claimed jobs
  that have not started go back to their queue, running jobs get ``grace``
  seconds, then the dispatcher deactivates;
* a second signal ends the grace period at once.

Configuration comes from options or a TOML file::

    db = "file://var/zasync/Data.fs"
    poll_interval = 5
    ping_interval = 30      # seconds between pings (stored on this worker's record)
    death_interval = 60     # a worker silent this long is dead; its jobs are recovered
    grace = 30

    [[agent]]
    name = "main"         # agent name (default "main")
    queue = ""            # queue name (default "")
    threads = 4
    prefetch = 16
    filter = "myapp.jobs:is_report"   # optional: dotted name of a callable(job) -> bool

:mod:`zasync.runtime.settings` reads and checks it (types and ranges, before anything
starts).  A worker whose poll thread dies stops with exit status 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pkgutil
import signal
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import field
from typing import Any, Protocol
from uuid import UUID

import pydantic
from pydantic.dataclasses import dataclass

from zasync import _counters
from zasync.errors import ConfigurationError
from zasync.identity import ENV_VAR as UUID_ENV_VAR
from zasync.identity import load_or_create_uuid_file, set_process_uuid
from zasync.interfaces import ZasyncError
from zasync.model.queue import install_queues, upgrade_lanes_at_start
from zasync.model.tx import commit_in_fresh_connection, fresh_connection
from zasync.runtime._limits import Grace, Port, Seconds, check_intervals
from zasync.runtime.config import AgentSpec
from zasync.runtime.dispatcher import Dispatcher
from zasync.runtime.dispatcher import pop as forget_dispatcher
from zasync.storage.database import Database, open_database

log = logging.getLogger("zasync.events")


@dataclass(config=pydantic.ConfigDict(strict=True))
class WorkerOptions:
    """Everything a worker process needs to know, checked when made (see runtime.settings)."""

    db: str | None = None
    agents: list[AgentSpec] = field(default_factory=lambda: [AgentSpec(threads=4, prefetch=16)])
    poll_interval: Seconds = 5.0
    ping_interval: Seconds | None = None
    death_interval: Seconds | None = None
    grace: Grace = 30.0
    uuid: UUID | None = None
    serve: bool = True
    burst: bool = False
    http_port: Port | None = None  # serve /metrics and /live/* on 127.0.0.1 (0: any free port)

    def __post_init__(self) -> None:
        check_intervals(self.poll_interval, self.ping_interval, self.death_interval)

    @property
    def queue_names(self) -> list[str]:
        """The queues the worker makes sure exist: the default one and its agents' queues."""
        return list(dict.fromkeys(["", *(a.queue for a in self.agents)]))


def resolve(dotted: str) -> Any:
    """Import ``module:attribute`` or ``module.attribute``; a ZasyncError says what failed."""
    try:
        return pkgutil.resolve_name(dotted)
    except (ImportError, AttributeError, ValueError) as e:
        raise ZasyncError(f"cannot import {dotted!r}: {e}") from None


def choose_uuid(opened: Database, explicit: uuid.UUID | None) -> uuid.UUID:
    """The worker's identity: explicit, ``$ZASYNC_UUID``, a file beside an embedded file, or new.

    Keeping the UUID across restarts lets a restarted worker recover its own
    previous jobs as soon as its old record counts as dead.
    """
    if explicit is not None:
        return explicit
    if os.environ.get(UUID_ENV_VAR):
        return uuid.UUID(os.environ[UUID_ENV_VAR])
    if opened.kind == "file" and opened.path:
        return load_or_create_uuid_file(f"{opened.path}.uuid")
    return uuid.uuid4()


class _Signals:
    """SIGTERM/SIGINT: the first asks for a graceful stop, the second hurries it."""

    def __init__(self, stop: threading.Event, hurry: Callable[[], None]) -> None:
        self.stop = stop
        self.hurry = hurry
        self.previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            log.info("not in the main thread: no signal handlers installed")
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if not self.stop.is_set():
            log.warning("%s: stopping gracefully (send it again to stop at once)", name)
            self.stop.set()
        else:
            log.warning("%s again: stopping at once", name)
            self.hurry()


def run_worker(
    options: WorkerOptions,
    ready: Callable[[Dispatcher, Database], None] | None = None,
    connect_timeout: float | None = None,
    http_server: HttpServerFactory | None = None,
) -> int:
    """Run a worker until stopped (or, with ``burst``, until no job is due).

    Return the exit status: 0, or ``POLL_THREAD_DIED`` if the dispatcher's
    poll thread ended under it (the worker then stops, so that a supervisor
    starts a new one, rather than stay up without claiming).
    ``connect_timeout``: seconds to wait for a ZEO or PostgreSQL server at start.
    ``http_server(dispatcher, database, port)`` starts what serves
    ``options.http_port`` (the command line passes
    :func:`zasync.ops.live.start_worker_view`); the runtime itself serves nothing.
    """
    if options.http_port is not None and http_server is None:
        raise ConfigurationError(
            "http_port is set but no http_server was given to serve it: pass one, "
            "or leave http_port unset"
        )
    opened = open_database(options.db, serve=options.serve, connect_timeout=connect_timeout)
    try:
        _prepare_queues(opened, options.queue_names)
        worker_uuid = choose_uuid(opened, options.uuid)
        set_process_uuid(worker_uuid)
        dispatcher = Dispatcher(
            opened.db,
            uuid=worker_uuid,
            poll_interval=options.poll_interval,
            agents=options.agents,
            ping_interval=options.ping_interval,
            death_interval=options.death_interval,
            # The embedded file's lock proves no earlier run of this worker lives on.
            sole_owner=opened.kind == "file",
        )
        live_server = None
        if options.http_port is not None and http_server is not None:
            live_server = http_server(dispatcher, opened, options.http_port)
        stop = threading.Event()
        signals = _Signals(stop, dispatcher.hurry)
        signals.install()
        try:
            dispatcher.activate()
            _log_started(worker_uuid, opened, options)
            if ready is not None:
                ready(dispatcher, opened)
            status = _wait(dispatcher, stop, options.burst)
        finally:
            if dispatcher.activated:
                dispatcher.stop(options.grace)
            signals.restore()
            if live_server is not None:
                live_server.close()
            with contextlib.suppress(KeyError):
                forget_dispatcher(dispatcher.UUID)
        _log_stopped(worker_uuid)
        return status
    finally:
        opened.close()


class Closable(Protocol):
    """What serves a worker's HTTP port: closed when the worker stops."""

    def close(self) -> None:
        """Stop serving."""


HttpServerFactory = Callable[[Dispatcher, Database, int], Closable]


def _prepare_queues(opened: Database, names: Iterable[str]) -> None:
    """Install the queues (workers starting together race: conflicts retry), upgrade lanes."""
    commit_in_fresh_connection(
        opened.db,
        lambda conn, _tm: install_queues(conn, *names),
        note="zasync: install queues",
    )
    with fresh_connection(opened.db) as (conn, _tm):
        upgrade_lanes_at_start(conn)


def _log_started(worker_uuid: UUID, opened: Database, options: WorkerOptions) -> None:
    log.info(
        "worker %s serving %s with %s",
        worker_uuid,
        opened.uri + (f" (shared at {opened.server.address})" if opened.server else ""),
        ", ".join(
            f"{a.queue!r}/{a.name} ({a.threads} threads, {a.prefetch} ahead"
            + (f", {a.batch} jobs per commit" if a.batch > 1 else "")
            + (f", time limit {a.timeout:g} s" if a.timeout is not None else "")
            + ")"
            for a in options.agents
        ),
    )


def _log_stopped(worker_uuid: UUID) -> None:
    conflicts = _counters.conflict_counts()
    by_class = sorted(_counters.conflicts_by_class().items(), key=lambda kv: -kv[1])
    log.info(
        "worker %s stopped; conflict retries: job %d, bookkeeping %d (on: %s)",
        worker_uuid,
        conflicts.get("job", 0),
        conflicts.get("bookkeeping", 0),
        ", ".join(f"{name} {count}" for name, count in by_class) or "nothing",
    )


#: The exit status of a worker whose poll thread died.
POLL_THREAD_DIED = 1


def _wait(dispatcher: Dispatcher, stop: threading.Event, burst: bool) -> int:
    """Wait for a stop signal (or, in burst mode, for no job due); return the exit status."""
    idle_polls = 0
    last_key = None
    while not stop.wait(0.05 if burst else 0.5):
        if dispatcher.poll_thread_died:
            log.error(
                "worker %s: its poll thread died (%r); stopping with exit status %d",
                dispatcher.UUID,
                dispatcher.poll_thread_error,
                POLL_THREAD_DIED,
            )
            return POLL_THREAD_DIED
        if not burst:
            continue
        poll = dispatcher.records.latest_poll()
        if poll is None or poll.key == last_key:
            dispatcher.wake()
            continue
        last_key = poll.key
        idle_polls = idle_polls + 1 if dispatcher.is_idle() else 0
        if idle_polls >= 2:
            log.info("burst mode: no job is due; stopping")
            return 0
        dispatcher.wake()
    return 0
