"""The peers: huey, dramatiq, Celery, RQ, procrastinate, DBOS (run with ``var/peers-venv``).

Each worker runs with the library's defaults except the concurrency, which is
T threads (RQ: T worker processes of ``rq worker-pool``).  The job modules are
in :mod:`peerjobs`.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from typing import Any, ClassVar

from targets.base import Target

REDIS_URL = "PEERS_REDIS_URL"
PG_DSN = "PEERS_PG_DSN"
BATCH = 1000


class _Redis(Target):
    """A peer on the harness's Redis server, flushed before each run."""

    needs: ClassVar[frozenset[str]] = frozenset({"redis"})
    backend = "Redis"

    def setup(self) -> dict[str, str]:
        assert self.context is not None and self.context.redis_url is not None
        import socket

        # FLUSHALL with a raw RESP command: the project's environment has no Redis client.
        host_port = self.context.redis_url.split("//", 1)[1].split("/", 1)[0]
        host, port = host_port.split(":")
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(b"*1\r\n$8\r\nFLUSHALL\r\n")
            reply = s.recv(64)
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"FLUSHALL answered {reply!r}")
        return {REDIS_URL: self.context.redis_url}


class _Postgres(Target):
    """A peer on a fresh database of the harness's PostgreSQL server."""

    needs: ClassVar[frozenset[str]] = frozenset({"postgres"})

    def setup(self) -> dict[str, str]:
        assert self.context is not None and self.context.postgres is not None
        self._database = f"{self.name}_{uuid.uuid4().hex[:10]}"
        return {PG_DSN: self.context.postgres.create_database(self._database)}

    def teardown(self) -> None:
        database = getattr(self, "_database", None)
        if database is not None and self.context is not None:
            self.context.postgres.drop_database(database)


class Huey(Target):
    """huey 3 on SQLite: ``huey_consumer -w T -k thread``."""

    name = "huey"
    backend = "SQLite (SqliteHuey)"

    def setup(self) -> dict[str, str]:
        assert self.context is not None
        return {"PEERS_HUEY_DB": str(self.context.directory / "huey.db")}

    def worker_command(self, threads: int, index: int) -> list[str]:
        assert self.context is not None
        return [
            str(self.context.python("peers").parent / "huey_consumer"),
            "peerjobs.huey_jobs.huey",
            "-w",
            str(threads),
            "-k",
            "thread",
            "-q",
        ]

    def enqueue(self, n: int) -> None:
        from peerjobs.huey_jobs import drain

        for _ in range(n):  # huey has no batch enqueue: one SQLite transaction per job
            drain()

    def put_one(self, i: int) -> None:
        from peerjobs.huey_jobs import sample

        sample(i)


class Dramatiq(_Redis):
    """dramatiq 2 on Redis: ``dramatiq --processes 1 --threads T``."""

    name = "dramatiq"

    def worker_command(self, threads: int, index: int) -> list[str]:
        assert self.context is not None
        return [
            str(self.context.python("peers").parent / "dramatiq"),
            "--processes",
            "1",
            "--threads",
            str(threads),
            "peerjobs.dramatiq_jobs",
        ]

    def enqueue(self, n: int) -> None:
        from peerjobs.dramatiq_jobs import drain

        for _ in range(n):  # one message per send (dramatiq has no batch enqueue)
            drain.send()

    def put_one(self, i: int) -> None:
        from peerjobs.dramatiq_jobs import sample

        sample.send(i)


class Celery(_Redis):
    """Celery 5 on Redis, no result backend: ``--pool threads --concurrency T``."""

    name = "celery"

    def worker_command(self, threads: int, index: int) -> list[str]:
        assert self.context is not None
        return [
            str(self.context.python("peers").parent / "celery"),
            "-A",
            "peerjobs.celery_jobs",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            str(threads),
            "--loglevel",
            "WARNING",
        ]

    def enqueue(self, n: int) -> None:
        from peerjobs.celery_jobs import app, drain

        with app.producer_or_acquire() as producer:  # one connection for the whole batch
            for _ in range(n):
                drain.apply_async(producer=producer)

    def put_one(self, i: int) -> None:
        from peerjobs.celery_jobs import sample

        sample.delay(i)


class Rq(_Redis):
    """RQ on Redis: ``rq worker-pool -n T`` (T worker processes, each forking per job)."""

    name = "rq"
    concurrency = "worker-pool of T processes (fork per job)"
    # rq worker-pool does not exit within 30 s of a SIGTERM while its workers wait for
    # jobs; how long a worker takes to stop is not measured, so do not wait for it.
    stop_grace = 5.0

    def __init__(self, context: Any = None) -> None:
        super().__init__(context)
        self._queue: Any = None

    def worker_command(self, threads: int, index: int) -> list[str]:
        assert self.context is not None and self.context.redis_url is not None
        return [
            str(self.context.python("peers").parent / "rq"),
            "worker-pool",
            "-n",
            str(threads),
            "-u",
            self.context.redis_url,
            "-q",
            "peers",
        ]

    def _open(self) -> Any:
        if self._queue is None:
            from redis import Redis
            from rq import Queue

            self._queue = Queue("peers", connection=Redis.from_url(os.environ[REDIS_URL]))
        return self._queue

    def enqueue(self, n: int) -> None:
        from peerjobs.rq_jobs import drain
        from rq import Queue

        queue = self._open()
        for start in range(0, n, BATCH):
            batch = [Queue.prepare_data(drain) for _ in range(min(BATCH, n - start))]
            queue.enqueue_many(batch)

    def put_one(self, i: int) -> None:
        from peerjobs.rq_jobs import sample

        self._open().enqueue(sample, i)


class Procrastinate(_Postgres):
    """procrastinate 3 on PostgreSQL: ``procrastinate worker --concurrency T``."""

    name = "procrastinate"
    backend = "PostgreSQL"
    APP = "peerjobs.procrastinate_jobs.app"

    def __init__(self, context: Any = None) -> None:
        super().__init__(context)
        self._app: Any = None

    def setup(self) -> dict[str, str]:
        env = super().setup()
        assert self.context is not None
        self.context.env.update(env)
        subprocess.run(
            [
                str(self.context.python("peers").parent / "procrastinate"),
                f"--app={self.APP}",
                "schema",
                "--apply",
            ],
            check=True,
            capture_output=True,
            env=self.context.process_env(),
            timeout=120,
            start_new_session=True,
        )
        return env

    def worker_command(self, threads: int, index: int) -> list[str]:
        assert self.context is not None
        return [
            str(self.context.python("peers").parent / "procrastinate"),
            f"--app={self.APP}",
            "worker",
            "--concurrency",
            str(threads),
        ]

    def _open(self) -> Any:
        if self._app is None:
            from peerjobs.procrastinate_jobs import app

            self._app = app.open()
        return self._app

    def enqueue(self, n: int) -> None:
        from peerjobs.procrastinate_jobs import drain

        self._open()
        for start in range(0, n, BATCH):
            drain.batch_defer(*[{} for _ in range(min(BATCH, n - start))])

    def put_one(self, i: int) -> None:
        from peerjobs.procrastinate_jobs import sample

        self._open()
        sample.defer(i=i)

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None


class Dbos(_Postgres):
    """DBOS on PostgreSQL: a process launching DBOS with a Queue of worker_concurrency T."""

    name = "dbos"
    backend = "PostgreSQL (system database)"
    concurrency = "1 process, queue worker_concurrency T"

    def __init__(self, context: Any = None) -> None:
        super().__init__(context)
        self._client: Any = None

    def setup(self) -> dict[str, str]:
        env = super().setup()
        env["PEERS_DBOS_URL"] = env[PG_DSN]
        assert self.context is not None
        # The client enqueues before any worker has launched DBOS: create its tables first.
        subprocess.run(
            [
                str(self.context.python("peers")),
                "-c",
                "import sys, dbos; dbos.run_dbos_database_migrations(sys.argv[1])",
                env[PG_DSN],
            ],
            check=True,
            capture_output=True,
            timeout=120,
            start_new_session=True,
        )
        return env

    def drain_timeout(self, jobs: int, threads: int) -> float:
        # With its defaults, a DBOS worker dequeues up to worker_concurrency workflows per
        # queue poll, and polls once a second: about T jobs/s.  Leave it time to finish.
        return 3 * jobs / threads + 60

    def worker_command(self, threads: int, index: int) -> list[str]:
        assert self.context is not None  # the harness sets PEERS_THREADS to T
        return [str(self.context.python("peers")), "-m", "peerjobs.dbos_jobs"]

    def _open(self) -> Any:
        if self._client is None:
            from dbos import DBOSClient

            self._client = DBOSClient(system_database_url=os.environ["PEERS_DBOS_URL"])
        return self._client

    def enqueue(self, n: int) -> None:
        client = self._open()
        for _ in range(n):  # DBOSClient enqueues one workflow per call
            client.enqueue({"queue_name": "peers", "workflow_name": "drain"})

    def put_one(self, i: int) -> None:
        self._open().enqueue({"queue_name": "peers", "workflow_name": "sample"}, i)

    def close(self) -> None:
        if self._client is not None:
            self._client.destroy()
            self._client = None


PEERS: list[type[Target]] = [Huey, Dramatiq, Celery, Rq, Procrastinate, Dbos]
