"""Real worker processes for tests: start, signal, kill, and a short-lived client."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import transaction

from zasync.storage.database import open_database

from processes import python_env

FAST = ["--poll-interval", "0.2", "--ping-interval", "0.3", "--death-interval", "1.5"]


#: How long a test waits for a condition before it fails.  Generous, for loaded machines:
#: a wait ends as soon as its condition holds, so only a failing test waits this long.
PATIENCE = 240.0


class WorkerProcess:
    """A ``zasync worker`` subprocess with its log in a file."""

    def __init__(
        self,
        db: str,
        log: Path,
        *args: str,
        env: dict[str, str] | None = None,
        skew: float | None = None,
    ) -> None:
        self.log = log
        # Where this process's lines begin in a log an earlier worker may have written.
        self.log_start = log.stat().st_size if log.exists() else 0
        # ``skew``: run with zasync's clock that many seconds off (see skewed.py).
        wrapper = [] if skew is None else [str(Path(__file__).with_name("skewed.py")), str(skew)]
        command = [
            sys.executable,
            *wrapper,
            "-m",
            "zasync",
            # ZASYNC_TEST_VERBOSITY=-vv logs each conflict retried and what it was on.
            os.environ.get("ZASYNC_TEST_VERBOSITY", "-v"),
            "--db",
            db,
            "worker",
            *FAST,
            *args,
        ]
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=python_env(**(env or {}))
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def own_text(self) -> str:
        """The lines this process wrote (not an earlier worker's, in a shared log)."""
        with open(self.log, "rb") as f:
            f.seek(self.log_start)
            return f.read().decode(errors="replace")

    def wait_until_owner(self, timeout: float = PATIENCE) -> None:
        """Wait until this worker opened an embedded file as its owner (and serves it).

        A test that opens the file itself right after starting a worker races
        it: if the test's client opens it first, the worker starts as a client
        of the test, with another UUID than the one kept beside the file.
        """
        deadline = time.monotonic() + timeout
        while "(shared at " not in self.own_text():
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited ({self.process.returncode}):\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the worker never served the file:\n{self.text()}")
            time.sleep(0.02)

    def wait_for_log(self, needle: str, timeout: float = PATIENCE) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited ({self.process.returncode}):\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never logged:\n{self.text()}")
            time.sleep(0.02)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def wait(self, timeout: float = PATIENCE) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def client(uri: str) -> Iterator[Any]:
    """A connection for the test thread, closed (releasing any file lock) afterwards."""
    opened = open_database(uri)
    conn = opened.db.open()
    try:
        yield conn
    finally:
        transaction.abort()
        conn.close()
        opened.close()


def wait_until(condition: Any, timeout: float = PATIENCE, message: str = "never happened") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.02)


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def touch(path: Path) -> None:
    path.write_text("go")
    os.sync()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ZEOServer:
    """A ZEO server process (from the ZEO package) on loopback, serving one FileStorage."""

    def __init__(self, path: Path, port: int, log: Path) -> None:
        self.path, self.port, self.log = path, port, log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"zeo://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ZEO.runzeo",
                    "-a",
                    f"127.0.0.1:{self.port}",
                    "-f",
                    str(self.path),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=python_env(),
            )
        import socket

        def accepting() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(accepting, message="ZEO server never listened")

    def kill(self) -> None:
        """``kill -9`` the server: it saves nothing, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:  # a server busy with clients may not exit
                self.process.kill()
                self.process.wait(30)
        self.process = None
