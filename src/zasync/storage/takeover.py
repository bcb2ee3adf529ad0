"""When the process serving an embedded file exits, one of its clients serves it next.

Whichever process opens an embedded FileStorage file first holds its lock and
serves it to the others through a socket (:mod:`zasync.storage.embedded`); the
others are ZEO clients of that socket.  When the serving process stops (or
dies), the lock comes free, and the clients' connections drop.  Every client
process watches its connection (:class:`TakeOver`); while it is down, each
tries to take the file's lock, and the one that gets it opens the file and
serves it at the same socket, in a thread of its own.  The others, and the
new server's own database, reconnect to the socket as ZEO clients do.

So processes may start and stop in any order: a worker started after the
application, the dashboard or a command line works as their client; when
they exit, it (or another client) carries on serving.  A process that took
over serves until it closes its database; its own commits still go through
the socket, so a worker that serves this way is slower than one that opened
the file first (restarting it makes it the file's direct owner again).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import zc.lockfile

from zasync.storage.embedded import EmbeddedServer, socket_path
from zasync.storage.filestorage import SafeFileStorage
from zasync.storage.fresh_oids import skip_reissued_oids

log = logging.getLogger("zasync.events")

#: Seconds between two looks at a client's connection.
WATCH_INTERVAL = 0.2


class TakeOver:
    """Watches a client's connection to an embedded file's server; serves the file when it drops.

    ``storage`` is the client's ``ClientStorage``.  The watching thread ends
    once this process serves the file, or at :meth:`close`, which also stops
    serving and closes the file.
    """

    def __init__(self, path: str, storage: Any) -> None:
        self.path = path
        self._client = storage
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.server: EmbeddedServer | None = None
        self._file: Any = None
        self._failures = 0
        self._thread = threading.Thread(
            target=self._watch, name=f"zasync take-over of {path}", daemon=True
        )
        self._thread.start()

    @property
    def serving(self) -> bool:
        """True once this process serves the file."""
        return self.server is not None

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL):
            if self._client.is_connected():
                continue
            with self._lock:
                if self._stop.is_set() or self._try_to_serve():
                    return

    def _try_to_serve(self) -> bool:
        """Open and serve the file if its lock is free; True if this process now serves it."""
        storage = None
        try:
            storage = SafeFileStorage(self.path)
            skip_reissued_oids(storage)
            self.server = EmbeddedServer(None, storage, socket_path(self.path))
        except zc.lockfile.LockError:
            return False  # still held: the old server exiting, or another client took over
        except Exception:
            if storage is not None:
                storage.close()
            self._failures += 1
            if self._failures == 1:
                log.exception("cannot take over serving %s; still trying", self.path)
            return False
        self._file = storage
        log.info("took over serving %s: the process that served it stopped", self.path)
        return True

    def close(self) -> None:
        """Stop watching; stop serving and close the file if this process took it over.

        Call it after closing the client's database, so that the database's
        last commits reach the file before the server stops.
        """
        self._stop.set()
        with self._lock:
            if self.server is not None:
                self.server.close()
                self.server = None
            if self._file is not None:
                self._file.close()
                self._file = None
        if self._thread is not threading.current_thread():
            self._thread.join(10)
