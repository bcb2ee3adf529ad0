"""The interface every benchmark target implements.

A target is used from two sides:

* the harness (``run.py``, in the project's environment) calls :meth:`Target.setup`
  (a fresh database, queue or file, and the environment variables naming it),
  :meth:`Target.start_worker`, :meth:`Target.ready` and :meth:`Target.teardown`;
* a client process (``client.py``, in the target's own environment: the
  project's for zasync, ``var/peers-venv`` for the peers) calls
  :meth:`Target.enqueue` and :meth:`Target.put_one`, then :meth:`Target.close`.

So a target module imports only the standard library at its top: its library
is imported inside the client-side methods, where the environment has it.
The client side reads everything it needs from environment variables set by
:meth:`Target.setup` (plus ``PEERS_DRAIN_FILE`` and ``PEERS_LATENCY_FILE``).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

Environment = Literal["project", "peers"]


@dataclass
class Context:
    """What the harness gives a target for one run: where things are, and the servers."""

    directory: Path  #: a fresh temporary directory for this target's run
    project_python: Path  #: the project's venv python (zasync)
    peers_python: Path | None  #: the peers' venv python, if it exists
    bench_dir: Path  #: bench/peers (on PYTHONPATH of workers and clients)
    redis_url: str | None = None
    postgres: Any = None  #: a servers.PostgresServer, if a selected target needs one
    zeo_runzeo: Path | None = None  #: the project's runzeo script
    env: dict[str, str] = field(default_factory=dict)  #: set by setup, for workers and clients

    def python(self, environment: Environment) -> Path:
        """The python of ``environment``."""
        if environment == "project":
            return self.project_python
        if self.peers_python is None:
            raise RuntimeError("the peers' environment is missing")
        return self.peers_python

    def process_env(self) -> dict[str, str]:
        """The environment of worker and client processes: ours, PYTHONPATH, the target's."""
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.bench_dir)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.env)
        return env


class Target:
    """One queue library (or one zasync deployment) under the same workload."""

    #: The ``--targets`` name.
    name: ClassVar[str] = ""
    #: Which python runs its workers and clients.
    environment: ClassVar[Environment] = "peers"
    #: Servers the harness must start for it: "redis", "postgres".
    needs: ClassVar[frozenset[str]] = frozenset()
    #: Worker processes started for the drain and latency phases.
    workers: ClassVar[int] = 1
    #: How the T threads are used, for the table (e.g. "1 process x T threads").
    concurrency: ClassVar[str] = "1 process x T threads"
    #: The storage or broker, for the table.
    backend: ClassVar[str] = ""
    #: Seconds a worker gets to exit after SIGTERM before its process group is killed.
    stop_grace: ClassVar[float] = 30.0

    def __init__(self, context: Context | None = None) -> None:
        self.context = context
        #: Client side: puts retried after a conflict (reported by the latency client).
        self.retries = 0

    # -- the harness side ----------------------------------------------------------

    def setup(self) -> dict[str, str]:
        """Prepare a fresh store for one run; return environment variables naming it."""
        return {}

    def worker_command(self, threads: int, index: int) -> list[str]:
        """The command line of worker process ``index`` (0-based) with ``threads`` threads."""
        raise NotImplementedError

    def start_worker(self, threads: int, index: int = 0) -> subprocess.Popen[bytes]:
        """Start worker process ``index`` in a session of its own, logging to the run directory."""
        assert self.context is not None
        log_path = self.context.directory / f"worker-{index}.log"
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                self.worker_command(threads, index),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.context.directory,
                env=self.context.process_env(),
                start_new_session=True,
            )

    def drain_timeout(self, jobs: int, threads: int) -> float:
        """Seconds a drain of ``jobs`` may take at least (the harness's ``--timeout`` if more)."""
        return 0.0

    def ready(self) -> bool:
        """Whether the started workers can take a put now (polled before the warm-up job)."""
        return True

    def teardown(self) -> None:
        """Remove what :meth:`setup` made outside the run directory (a database...)."""

    # -- the client side -----------------------------------------------------------

    def enqueue(self, n: int) -> None:
        """Put ``n`` drain jobs, in batches where the library allows."""
        raise NotImplementedError

    def put_one(self, i: int) -> None:
        """Put latency job ``i`` and return once the put is committed or acknowledged."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the client's connections."""
