"""Being told about commits: the hook behind fast wake-ups and the embedded server.

ZODB tells each open database about commits through its MVCC adapter: its
``_invalidate_finish`` for commits made through this database, and its
``invalidate`` for commits made elsewhere (reported by ZEO's client storage,
or by zasync's embedded server).  A :class:`CommitWatcher` wraps both and
passes ``(tid, oids, local)`` to its subscribers.  Storages that find changes by
polling instead (RelStorage) report nothing here; callers fall back to timers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from typing import Any

log = logging.getLogger("zasync.events")

Subscriber = Callable[[bytes, Collection[bytes], bool], None]


class CommitWatcher:
    """Calls subscribers with the oids of every commit the database learns of."""

    def __init__(self, db: Any) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self.supported = False
        adapter = getattr(db, "_mvcc_storage", None)
        if adapter is None or not hasattr(adapter, "_invalidate_finish"):
            return  # an IMVCCStorage such as RelStorage: no notifications
        self.supported = True
        local_finish = adapter._invalidate_finish
        external = adapter.invalidate

        def invalidate_finish(tid: bytes, oids: Any, committing_instance: Any) -> None:
            local_finish(tid, oids, committing_instance)
            self._notify(tid, oids, True)

        def invalidate(tid: bytes, oids: Any, *args: Any, **kwargs: Any) -> None:
            external(tid, oids, *args, **kwargs)
            self._notify(tid, oids, False)

        adapter._invalidate_finish = invalidate_finish
        adapter.invalidate = invalidate

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber(tid, oids, local)`` after each commit (from the committing thread)."""
        with self._lock:
            self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop calling ``subscriber``; unknown subscribers are ignored."""
        with self._lock:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

    def _notify(self, tid: bytes, oids: Any, local: bool) -> None:
        if oids is None:
            return
        for subscriber in list(self._subscribers):
            try:
                subscriber(tid, oids, local)
            except Exception:  # a subscriber must never break a commit
                log.exception("commit subscriber %r failed", subscriber)


_watchers_lock = threading.Lock()


def commit_watcher(db: Any) -> CommitWatcher:
    """The database's watcher, installed on first use."""
    with _watchers_lock:
        watcher = getattr(db, "_zasync_commit_watcher", None)
        if watcher is None:
            watcher = CommitWatcher(db)
            db._zasync_commit_watcher = watcher
        return watcher
