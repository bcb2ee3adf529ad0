"""Private files and directories: what zasync creates beside a database.

A database file holds every job's pickled arguments and results, so zasync
creates it, its sidecars (``.index``, ``.lock``, ``.tmp``, ``.pack``,
``.uuid``), its socket and the directories it makes for them readable by
their owner only: files 0600, directories 0700.

``ZASYNC_FILE_MODE`` (octal, e.g. ``0640`` to let a group read the database)
raises that ceiling; a directory gets the same bits plus execute wherever
read is allowed (0640 gives 0750).  The process umask still applies to
everything zasync creates, so a stricter umask gives stricter modes; zasync
never makes an existing file more open, only tightens one that is more open
than the ceiling (a database created by an older version, or a file
FileStorage recreated itself).
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator
from typing import Any

from ZODB.FileStorage import FileStorage

from zasync.interfaces import ZasyncError

MODE_ENV_VAR = "ZASYNC_FILE_MODE"
DEFAULT_MODE = 0o600

_umask_lock = threading.Lock()


def file_mode() -> int:
    """The most open mode a file zasync creates may have (``$ZASYNC_FILE_MODE`` or 0600)."""
    text = os.environ.get(MODE_ENV_VAR, "").strip()
    if not text:
        return DEFAULT_MODE
    try:
        mode = int(text, 8)
    except ValueError:
        raise ZasyncError(f"{MODE_ENV_VAR}={text!r} is not an octal mode such as 0600") from None
    if mode & ~0o666 or mode & 0o600 != 0o600:
        raise ZasyncError(
            f"{MODE_ENV_VAR}={text!r}: a file mode must give its owner read and write "
            "and nobody execute (0600, 0640, 0660)"
        )
    return mode


def dir_mode(mode: int | None = None) -> int:
    """The directory mode that goes with a file mode: execute wherever read is allowed."""
    mode = file_mode() if mode is None else mode
    return mode | ((mode & 0o444) >> 2)


def make_dirs(directory: str) -> None:
    """Create ``directory`` and any missing parents with :func:`dir_mode`.

    Directories that exist already keep their mode: they may be shared on
    purpose (a home directory, ``/srv``).
    """
    directory = os.path.abspath(directory)
    missing = []
    while not os.path.isdir(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    mode = dir_mode()
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            os.mkdir(path, mode)


def create_private(path: str) -> None:
    """Make sure ``path`` exists without opening it beyond :func:`file_mode`.

    A missing file is created empty with that mode (the umask applies); an
    existing one keeps its content and is only tightened.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), file_mode())
    os.close(fd)
    tighten(path)


def tighten(path: str) -> None:
    """Remove the permission bits of ``path`` beyond :func:`file_mode`, if it is ours.

    Missing files and files of other users are left alone.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if st.st_uid != os.geteuid() or stat.S_ISLNK(st.st_mode):
        return
    current = stat.S_IMODE(st.st_mode)
    wanted = current & (dir_mode() if stat.S_ISDIR(st.st_mode) else file_mode())
    if wanted != current:
        os.chmod(path, wanted)


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Run a block that creates a file it cannot give a mode to (a socket's bind).

    The umask is process-wide: other threads creating files meanwhile get
    modes at most as open as :func:`file_mode`, never more open.  The block
    must be short; a lock keeps two such blocks from restoring each other's
    umask.
    """
    with _umask_lock:
        strict = 0o777 & ~file_mode()
        previous = os.umask(strict)
        os.umask(previous | strict)  # a umask stricter still stays
        try:
            yield
        finally:
            os.umask(previous)


class PrivateFileStorage(FileStorage):  # type: ignore[misc]  # ZODB is untyped
    """A FileStorage whose files are never more open than :func:`file_mode`.

    FileStorage creates its data file, ``.lock``, ``.tmp``, ``.index`` and,
    while packing, ``.pack`` with the umask's default mode (usually 0644).
    This creates each of them first with the private mode, where FileStorage
    then opens (and truncates) it without changing its mode.
    """

    def __init__(self, file_name: str, **options: Any) -> None:
        if not options.get("read_only"):
            for suffix in (".lock", ".tmp", ""):
                create_private(file_name + suffix)
        super().__init__(file_name, **options)
        tighten(file_name + ".index")

    def _save_index(self) -> None:
        if not self._is_read_only:
            create_private(f"{self.__name__}.index.index_tmp")
        super()._save_index()

    def pack(self, t: float, referencesf: Any, gc: bool | None = None) -> None:
        """Pack into a private ``.pack`` file (the data file becomes that file)."""
        packed = f"{self._file_name}.pack"
        if self._pack_is_in_progress:  # FileStorage refuses; leave the other pack's file
            super().pack(t, referencesf, gc)
            return
        create_private(packed)
        try:
            super().pack(t, referencesf, gc)
        finally:
            # Still there, empty, when there was nothing to pack.
            with contextlib.suppress(FileNotFoundError):
                if os.path.getsize(packed) == 0:
                    os.unlink(packed)
