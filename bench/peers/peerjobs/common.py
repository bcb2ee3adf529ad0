"""The one thing every benchmark job does: append one line to a file, with one ``os.write``.

The files are named by environment variables set by the harness for the
worker and client processes: ``PEERS_DRAIN_FILE`` and ``PEERS_LATENCY_FILE``.
Each is opened with ``O_APPEND`` and written with a single ``os.write`` per
line, so lines of concurrent jobs (threads or processes) never interleave.
"""

from __future__ import annotations

import os
import time

DRAIN_FILE = "PEERS_DRAIN_FILE"
LATENCY_FILE = "PEERS_LATENCY_FILE"


def _append(variable: str, line: str) -> None:
    fd = os.open(os.environ[variable], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def record_drain() -> None:
    """A drain job: append the job's start time (``time.time()``) as one line."""
    _append(DRAIN_FILE, f"{time.time()!r}\n")


def record_sample(sample: int) -> None:
    """A latency job: append ``"<sample> <time.time()>"`` as one line."""
    _append(LATENCY_FILE, f"{sample} {time.time()!r}\n")
