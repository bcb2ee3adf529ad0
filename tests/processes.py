"""Helpers for tests that run real Python processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


def python_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def run_python(code: str, timeout: float = 60, **env: str) -> str:
    """Run ``code`` in a new interpreter; return its stdout, raising with stderr on failure."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=python_env(**env),
    )
    if done.returncode != 0:
        raise AssertionError(f"child failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def zasync_cli(*args, check=True, timeout=120):
    """Run ``python -m zasync ARGS``; with ``check``, a non-zero exit fails the test."""
    done = subprocess.run(
        [sys.executable, "-m", "zasync", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=python_env(),
    )
    if check and done.returncode != 0:
        raise AssertionError(f"exit {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def file_database(path: Path) -> str:
    """Make a FileStorage at ``path`` with zasync's queues installed; its ``file://`` URI.

    For command-line tests that need a database but no worker (a worker
    would make it on its first start).
    """
    import ZODB
    import ZODB.FileStorage

    import zasync

    opened = ZODB.DB(ZODB.FileStorage.FileStorage(str(path)))
    with opened.transaction() as conn:
        zasync.install_queues(conn)
    opened.close()
    return f"file://{path}"
