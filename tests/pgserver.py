"""PostgreSQL for tests: the machine's server, or a private one started here.

Tests that need PostgreSQL use the server named by ``$ZASYNC_TEST_POSTGRES``
(a libpq URI such as ``postgresql://postgres@127.0.0.1:5432``), else the one
listening on 127.0.0.1:5432, else a private cluster this module creates with
Debian's ``initdb`` and ``pg_ctl`` in a temporary directory (``make test``
installs Debian's ``postgresql`` package where neither exists).  The fault
injection suite always starts a private one, since it restarts it.

Each test gets a fresh database of its own, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ENV_VAR = "ZASYNC_TEST_POSTGRES"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"


def accepting(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def binaries() -> Path | None:
    """Debian's PostgreSQL server programs (the newest version installed), if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """A private PostgreSQL cluster on a loopback port, with trust authentication."""

    def __init__(self, port: int) -> None:
        # Not under pytest's temporary directories: as root, the server runs as
        # the postgres user, who cannot enter those.
        self.directory = Path(tempfile.mkdtemp(prefix="zasync-pg-"))
        self.directory.chmod(0o755)
        self.data = self.directory / "data"
        self.port = port
        bin_dir = binaries()
        if bin_dir is None:
            raise RuntimeError(
                "PostgreSQL is neither running on 127.0.0.1:5432 nor installed; "
                "`make test` installs Debian's postgresql package, or set "
                f"${ENV_VAR} to a server's URI"
            )
        self.bin = bin_dir

    @property
    def uri(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def _run(self, *command: str) -> None:
        user = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            user = "postgres"
            owner = pwd.getpwnam(user)
            for path in (self.directory, *self.directory.rglob("*")):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        subprocess.run(
            command, check=True, capture_output=True, user=user, cwd=self.directory, timeout=120
        )

    def start(self) -> None:
        """Create the cluster on first use, then start it and wait until it accepts."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.data.exists():
            self._run(
                str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"
            )
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
        deadline = time.monotonic() + 240
        while not accepting("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL never listened on {self.port}")
            time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients; ``immediate``: like a crash)."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        """Stop the server and delete its cluster."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def server_uri() -> tuple[str, PostgresServer | None]:
    """The server tests use, and the private server started for it (None if none was)."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        return explicit.rstrip("/"), None
    if accepting("127.0.0.1", 5432):
        return DEFAULT_SERVER, None
    from workers import free_port

    server = PostgresServer(free_port())
    server.start()
    return server.uri, server


def _admin(server: str) -> object:
    import psycopg2

    conn = psycopg2.connect(f"{server}/postgres")
    conn.autocommit = True
    return conn


@contextlib.contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new empty database on ``server`` for the block; yields its zasync URI."""
    name = f"zasync_test_{uuid.uuid4().hex[:12]}"
    _execute(server, f"CREATE DATABASE {name}")
    try:
        yield f"{server}/{name}"
    finally:
        _execute(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _execute(server: str, statement: str) -> None:
    """Run one statement in a connection of its own (the server may have restarted)."""
    admin = _admin(server)
    try:
        with admin.cursor() as cursor:  # type: ignore[attr-defined]
            cursor.execute(statement)
    finally:
        admin.close()  # type: ignore[attr-defined]
