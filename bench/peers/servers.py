"""The servers the peer benchmark starts for itself: Redis, PostgreSQL, ZEO.

Each binds 127.0.0.1 on a free port, keeps its files in a temporary directory
of its own, and is a context manager that stops it (and removes its files) on
the way out, whether the block ended normally, by an error or by Ctrl-C.
Every wait is a condition polled with a deadline (:func:`wait_until`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

REDIS_SERVER = "/usr/bin/redis-server"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accepting(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def wait_until(
    condition: Callable[[], Any], timeout: float, message: str, interval: float = 0.02
) -> Any:
    """Poll ``condition`` until it returns a true value (returned), or RuntimeError."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"{message} (waited {timeout:g} s)")
        time.sleep(interval)


def stop_process(process: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM a process (started in a session of its own), then SIGKILL its whole group.

    Only the leader gets SIGTERM, as from a process manager: supervisors
    (dramatiq, ``rq worker-pool``) stop their own children.  After ``grace``
    seconds, or once it has exited, whatever is left of its group is killed.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
    kill_group(process)


def kill_group(process: subprocess.Popen[bytes], wait: bool = True) -> None:
    """SIGKILL the process group of ``process`` (started with ``start_new_session=True``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if wait:
        process.wait(30)


class _Server:
    """A server context manager: ``start()`` on entry, ``stop()`` on exit."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class RedisServer(_Server):
    """``redis-server`` without persistence (``--save "" --appendonly no``) on loopback."""

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="peers-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's ``redis://`` URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        with open(self.directory / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    REDIS_SERVER,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--dir",
                    str(self.directory),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(lambda: accepting(self.port), 30, "redis-server never listened")

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        if self.process is not None:
            stop_process(self.process)
            self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)


class PostgresServer(_Server):
    """A throw-away PostgreSQL cluster (Debian's initdb and pg_ctl), trust authentication.

    Listens on 127.0.0.1 only, on a free port; every other setting (``fsync``,
    ``synchronous_commit``, ``shared_buffers``...) is left at its default.  As
    root, the programs run as the ``postgres`` user, in a directory it owns.
    """

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError("PostgreSQL's server programs are not installed")
        self.bin = Path(found[-1]).parent
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="peers-pg-"))
        self.directory.chmod(0o755)
        self.data = self.directory / "data"

    @property
    def server(self) -> str:
        """The server's URI without a database: ``postgresql://postgres@127.0.0.1:PORT``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def _run(self, *command: str) -> None:
        user = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            user = "postgres"
            owner = pwd.getpwnam(user)
            for path in (self.directory, *self.directory.rglob("*")):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        subprocess.run(
            command,
            check=True,
            capture_output=True,
            user=user,
            cwd=self.directory,
            timeout=120,
            start_new_session=True,  # a Ctrl-C reaches the harness, which stops the server
        )

    def start(self) -> None:
        """Create the cluster, start it, and wait until it accepts connections."""
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust")
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.directory / "server.log"),
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory}",
            "-w",
            "start",
        )
        wait_until(lambda: accepting(self.port), 120, "PostgreSQL never listened")

    def stop(self) -> None:
        """Stop the server (fast mode) and delete the cluster."""
        if (self.data / "postmaster.pid").exists():
            try:
                self._run(
                    str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"
                )
            except subprocess.SubprocessError:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    def execute(self, statement: str) -> None:
        """Run one SQL statement on the ``postgres`` database, in autocommit mode."""
        import psycopg2  # the project's environment has it (zasync's postgresql extra)

        conn = psycopg2.connect(f"{self.server}/postgres", connect_timeout=30)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(statement)
        finally:
            conn.close()

    def create_database(self, name: str) -> str:
        """Create an empty database; return its URI."""
        self.execute(f"CREATE DATABASE {name}")
        return f"{self.server}/{name}"

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whatever still uses it."""
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class ZEOServer(_Server):
    """A ZEO server (``runzeo`` of the project's environment) serving one FileStorage file."""

    def __init__(self, runzeo: Path, directory: Path) -> None:
        self.runzeo = runzeo
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        """The server's ``zeo://`` URI."""
        return f"zeo://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        with open(self.directory / "zeo.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.runzeo),
                    "-a",
                    f"127.0.0.1:{self.port}",
                    "-f",
                    str(self.directory / "Data.fs"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(lambda: accepting(self.port), 60, "the ZEO server never listened")

    def stop(self) -> None:
        """Stop the server (its files stay in ``directory``, which its owner removes)."""
        if self.process is not None:
            stop_process(self.process, grace=15)
            self.process = None
