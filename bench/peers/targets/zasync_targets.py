"""zasync's targets: the embedded file, ZEO (1 or 2 workers), RelStorage on PostgreSQL (1 or 2).

Workers are the real command line, ``python -m zasync -q --db URI worker --threads T``,
with every other setting at its default (``--prefetch``: 4 x threads).  The
``*-batch`` targets add ``--batch 16``, the opt-in batch mode, and say so.  Clients
put with the Python API: :func:`zasync.open_database`, :func:`zasync.install_queues`,
``get_queues(conn)[""].put(...)``, committing every 1,000 jobs while enqueueing
and after every job for latency, each commit in ``transaction.manager.attempts()``
as the docs show (a conflict is retried; :attr:`Target.retries` counts them).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from targets.base import Context, Target

DB_URI = "PEERS_ZASYNC_DB"
BATCH = 1000


class _Zasync(Target):
    environment = "project"
    concurrency = "1 process x T threads"
    #: ``worker --batch``: jobs per transaction (1, the default: each job commits alone).
    batch: ClassVar[int] = 1

    def __init__(self, context: Context | None = None) -> None:
        super().__init__(context)
        self._opened: Any = None
        self._conn: Any = None

    def uri(self) -> str:
        """The database URI workers and clients use."""
        raise NotImplementedError

    def setup(self) -> dict[str, str]:
        return {DB_URI: self.uri()}

    def worker_command(self, threads: int, index: int) -> list[str]:
        assert self.context is not None
        return [
            str(self.context.project_python),
            "-m",
            "zasync",
            "-q",
            "--db",
            self.uri(),
            "worker",
            "--threads",
            str(threads),
            *(["--batch", str(self.batch)] if self.batch > 1 else []),
        ]

    # -- the client side -----------------------------------------------------------

    def _put(self, make_jobs: Callable[[], list[Any]], serve: bool = True) -> None:
        """Put the jobs ``make_jobs()`` returns in one transaction, retried on a conflict.

        Each attempt makes its jobs anew: a job added in an aborted attempt is no
        longer usable (its state went with the abort).
        """
        import transaction

        import zasync

        if self._conn is None:
            self._opened = zasync.open_database(os.environ[DB_URI], serve=serve)
            self._conn = self._opened.db.open()
        tries = 0
        for attempt in transaction.manager.attempts():
            with attempt:
                tries += 1
                queue = zasync.install_queues(self._conn)[""]
                for job in make_jobs():
                    queue.put(job)
        self.retries += tries - 1

    def enqueue(self, n: int) -> None:
        from peerjobs.zasync_jobs import drain

        for start in range(0, n, BATCH):
            batch: list[Any] = [drain] * min(BATCH, n - start)
            self._put(lambda: batch, serve=False)  # noqa: B023  (called before the next loop)

    def put_one(self, i: int) -> None:
        from peerjobs.zasync_jobs import sample

        import zasync

        self._put(lambda: [zasync.Job(sample, i)])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._opened.close()
            self._conn = self._opened = None


class ZasyncEmbedded(_Zasync):
    """The embedded FileStorage file; latency clients are ZEO clients of the worker."""

    name = "zasync-embedded"
    backend = "FileStorage file (embedded)"

    def uri(self) -> str:
        assert self.context is not None
        return f"file://{self.context.directory / 'Data.fs'}"

    def ready(self) -> bool:
        from zasync.storage.embedded import is_served

        assert self.context is not None
        return is_served(self.context.directory / "Data.fs")


class _ZasyncZeo(_Zasync):
    backend = "ZEO server (FileStorage)"

    def setup(self) -> dict[str, str]:
        from servers import ZEOServer

        assert self.context is not None and self.context.zeo_runzeo is not None
        self._server = ZEOServer(self.context.zeo_runzeo, self.context.directory / "zeo")
        self._server.start()
        return super().setup()

    def uri(self) -> str:
        return self._server.uri

    def teardown(self) -> None:
        server = getattr(self, "_server", None)
        if server is not None:
            server.stop()


class ZasyncZeo1(_ZasyncZeo):
    """One worker process, a client of the harness's ZEO server."""

    name = "zasync-zeo-1"


class ZasyncZeo2(_ZasyncZeo):
    """Two worker processes, each with T threads."""

    name = "zasync-zeo-2"
    workers = 2
    concurrency = "2 processes x T threads each"


class _ZasyncPg(_Zasync):
    backend = "RelStorage, PostgreSQL (history-free)"
    needs: ClassVar[frozenset[str]] = frozenset({"postgres"})

    def setup(self) -> dict[str, str]:
        assert self.context is not None and self.context.postgres is not None
        self._database = f"zasync_{uuid.uuid4().hex[:10]}"
        self._uri: str = self.context.postgres.create_database(self._database)
        return super().setup()

    def uri(self) -> str:
        return self._uri

    def teardown(self) -> None:
        database = getattr(self, "_database", None)
        if database is not None and self.context is not None:
            self.context.postgres.drop_database(database)


class ZasyncPg1(_ZasyncPg):
    """One worker process on RelStorage."""

    name = "zasync-pg-1"


class ZasyncPg2(_ZasyncPg):
    """Two worker processes on RelStorage, each with T threads."""

    name = "zasync-pg-2"
    workers = 2
    concurrency = "2 processes x T threads each"


#: ``--batch`` of the opt-in batch targets (see zasync.model.batch).
OPT_IN_BATCH = 16


def _batched(base: type[_Zasync]) -> type[_Zasync]:
    """The same target, its workers running ``--batch 16`` (an opt-in mode, named so)."""
    return type(
        base.__name__ + "Batch",
        (base,),
        {
            "name": f"{base.name}-batch",
            "batch": OPT_IN_BATCH,
            "concurrency": f"{base.concurrency}, --batch {OPT_IN_BATCH} (opt-in)",
            "__doc__": f"{base.__doc__} Opt-in batch mode: --batch {OPT_IN_BATCH}.",
        },
    )


BATCHED: list[type[_Zasync]] = [
    _batched(t) for t in (ZasyncEmbedded, ZasyncZeo1, ZasyncZeo2, ZasyncPg1, ZasyncPg2)
]
