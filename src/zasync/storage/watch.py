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


class ChangePoller:
    """Finds commits that changed given objects by reading them, for storages that don't tell.

    RelStorage has no push notifications: each new transaction polls the
    database.  A poller thread starts a transaction every ``interval`` seconds
    in a connection of its own (one cheap query for RelStorage), and calls
    ``callback(tid, changed_oids, False)`` when one of the objects ``oids()``
    names has a new serial.  Its cost is that query per interval per worker.
    With a ``listener`` (PostgreSQL's notifications) it looks as soon as a
    commit is notified, and the interval is only a fallback.
    """

    def __init__(
        self,
        db: Any,
        oids: Callable[[], Collection[bytes]],
        callback: Subscriber,
        interval: float = 0.05,
        name: str = "zasync-change-poller",
        listener: Any = None,
    ) -> None:
        self._db = db
        #: Something with ``wait(timeout) -> bool`` that returns early when a
        #: commit happened (:class:`~zasync.storage.pgwake.CommitListener`).
        self._listener = listener
        self._oids = oids
        self._callback = callback
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start polling in a daemon thread."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling and wait for the thread to end."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        import transaction

        tm = transaction.TransactionManager()
        conn = None
        seen: dict[bytes, bytes] = {}
        failures = 0
        while not self._pause(self.interval if not failures else min(5.0, 0.1 * failures)):
            try:
                if conn is None:
                    conn = self._db.open(transaction_manager=tm)
                tm.begin()
                changed = []
                for oid in list(self._oids()):
                    obj = conn.get(oid)
                    obj._p_activate()
                    serial = obj._p_serial
                    # An object seen for the first time counts as changed: it may have
                    # changed after the caller's last read and before this one.
                    if seen.get(oid) != serial:
                        changed.append(oid)
                    seen[oid] = serial
                tm.abort()
                failures = 0
                if changed:
                    self._callback(max(seen[o] for o in changed), changed, False)
            except Exception:
                failures += 1
                if failures == 1:
                    log.warning("change poller: reading failed; retrying", exc_info=True)
                tm.abort()
                if conn is not None:
                    conn.close()
                    conn = None
        if conn is not None:
            tm.abort()
            conn.close()
        if self._listener is not None:
            self._listener.close()

    def _pause(self, seconds: float) -> bool:
        """Wait for the next look (a notified commit ends it early); True once stopping."""
        if self._listener is None:
            return self._stop.wait(seconds)
        self._listener.wait(seconds)
        return self._stop.is_set()
