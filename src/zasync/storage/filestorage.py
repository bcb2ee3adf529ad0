"""The FileStorage zasync opens embedded files with: private, and sound after a failed write.

FileStorage writes a transaction's records to a scratch file (``.tmp``) as
they are stored, and copies them to the data file at the vote, through
buffered file objects.  When the disk is full, a write fails with part of
the data still in the file object's buffer, and FileStorage's own clean-up
(truncating the data file, rewinding the scratch file) fails the same way,
because Python flushes that buffer first.  The stale bytes then stay in the
buffer and are written out later, when space has come back, at positions
that by then hold (or are about to hold) other transactions' records: the
file ends up with records that read as garbage ("Non-zero version length")
or, worse, with an aborted transaction's records copied into the next one.

:class:`SafeFileStorage` makes a failed write leave nothing behind: the
file object that failed is dropped, unflushed bytes and all, and replaced by
a new one; the data file is cut back to the end of the last committed
transaction, and the scratch file starts again from nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import IO, Any

from ZODB.FileStorage.FileStorage import TempFormatter

from zasync._files import PrivateFileStorage

log = logging.getLogger("zasync.events")


class SafeFileStorage(PrivateFileStorage):
    """A private FileStorage (see :class:`zasync._files.PrivateFileStorage`) that a failed
    write, such as a full disk, leaves as it was before the transaction."""

    _file: IO[bytes]  # FileStorage's handles: the data file and the scratch file
    _tfile: IO[bytes] | None

    def tpc_vote(self, transaction: Any) -> Any:
        try:
            return super().tpc_vote(transaction)
        except OSError:
            self._renew_data_file()
            raise

    def _abort(self) -> None:
        try:
            super()._abort()
        except OSError:
            self._nextpos = 0
            self._renew_data_file()

    def _clear_temp(self) -> None:
        self._tindex.clear()
        if self._tfile is None:
            return
        try:
            self._tfile.seek(0)
        except OSError:  # a buffered write of the failed transaction, still unflushed
            self._renew_temp_file()

    def _renew_data_file(self) -> None:
        """Replace the data file's handle and cut the file back to the last commit's end."""
        fresh = open(self._file_name, "r+b")  # noqa: SIM115  # kept as the storage's handle
        _drop_unflushed(self._file)
        self._file = fresh
        fresh.truncate(self._pos)  # cutting back needs no space
        self._files.flush()
        log.info("%s: a write failed; the data file is back at its last commit", self._file_name)

    def _renew_temp_file(self) -> None:
        """Replace the scratch file's handle with a new, empty one."""
        fresh = open(self._file_name + ".tmp", "w+b")  # noqa: SIM115
        if self._tfile is not None:
            _drop_unflushed(self._tfile)
        self._tfile = fresh
        self._tfmt = TempFormatter(fresh)


def _drop_unflushed(handle: IO[bytes]) -> None:
    """Close a buffered file without writing what its buffer still holds to the file.

    Its descriptor is pointed at ``/dev/null`` first (atomically, so no other
    file can take its number meanwhile), where the final flush goes.
    """
    sink = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(sink, handle.fileno())
    finally:
        os.close(sink)
    with contextlib.suppress(OSError, ValueError):
        handle.close()
