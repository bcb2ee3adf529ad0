"""The UUID that identifies this process to the queues (its dispatcher's key).

Resolved once per process, in this order: :func:`set_process_uuid`, the
``ZASYNC_UUID`` environment variable, a new random UUID.  The worker command
also keeps one in a file beside the database, so a restarted worker takes over
its own former registration.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid

from zasync._files import file_mode, tighten

_lock = threading.Lock()
_uuid: uuid.UUID | None = None

ENV_VAR = "ZASYNC_UUID"


def get_process_uuid() -> uuid.UUID:
    """Return this process's UUID, choosing it on first use."""
    global _uuid
    with _lock:
        if _uuid is None:
            from_env = os.environ.get(ENV_VAR)
            _uuid = uuid.UUID(from_env) if from_env else uuid.uuid4()
        return _uuid


def set_process_uuid(value: uuid.UUID | str | None) -> None:
    """Set this process's UUID (None forgets it, so the next use chooses again)."""
    global _uuid
    with _lock:
        _uuid = None if value is None else uuid.UUID(str(value))


def load_or_create_uuid_file(path: str | os.PathLike[str]) -> uuid.UUID:
    """Read the UUID stored in ``path``, creating the file with a new one if missing.

    The file is created private (see :mod:`zasync._files`).
    """
    try:
        with open(path, encoding="ascii") as f:
            value = uuid.UUID(f.read().strip())
        tighten(os.fspath(path))
        return value
    except FileNotFoundError:
        value = uuid.uuid4()
        tmp = f"{os.fspath(path)}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # a leftover's mode would stay
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, file_mode())
        with open(fd, "w", encoding="ascii") as f:
            f.write(f"{value}\n")
        os.replace(tmp, path)
        return value
