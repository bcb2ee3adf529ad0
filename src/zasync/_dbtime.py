"""The database's time: when commits happened, by the clock of the storage server.

A ZODB transaction id encodes its commit time, chosen by one clock for every
client: the ZEO server's (or the process serving a FileStorage), or for
RelStorage on PostgreSQL the database server's (``clock_timestamp()``).
Comparing two such times never involves the clocks of the machines that
made the commits, nor the clock of the one comparing them.
"""

from __future__ import annotations

import datetime
from typing import Any

from ZODB.interfaces import IMVCCStorage
from ZODB.utils import p64, u64, z64

from zasync import clock


def in_database(obj: Any) -> bool:
    """Times of ``obj`` go by its commits: it is stored, and no test pins the clock."""
    return getattr(obj, "_p_jar", None) is not None and not clock.is_pinned()


def commit_time(obj: Any) -> datetime.datetime | None:
    """The database time of the commit that last wrote ``obj``; None if it never was."""
    if getattr(obj, "_p_jar", None) is None:
        return None
    obj._p_activate()
    serial = obj._p_serial
    return None if serial in (None, z64) else clock.tid_time(serial)


def view_time(conn: Any) -> datetime.datetime | None:
    """The database time of the newest commit that ``conn``'s current transaction sees.

    Everything committed up to then is in the view, and nothing after; so a
    view taken long ago (by a process frozen since) reports an old time.
    None for a storage whose view is not known this way.
    """
    storage = getattr(conn, "_storage", None)
    start = getattr(storage, "_start", None)  # ZODB's MVCC adapter loads before this tid
    if isinstance(start, bytes) and start != z64:
        return clock.tid_time(p64(u64(start) - 1))
    if storage is not None and IMVCCStorage.providedBy(storage):  # RelStorage: its snapshot
        tid = storage.lastTransaction()
        return None if tid == z64 else clock.tid_time(tid)
    return None


def database_now(conn: Any) -> datetime.datetime:
    """A time that is not after the database's clock's "now", as far as this process knows.

    The later of the newest commit in ``conn``'s view and this process's
    corrected clock (less :data:`zasync.clock.SKEW_BOUND` while the clock's
    offset is not measured yet).  The pinned clock, in tests.
    """
    now = clock.utcnow()
    if clock.is_pinned():
        return now
    if clock.offset() is None:
        now -= clock.SKEW_BOUND
    seen = view_time(conn)
    return now if seen is None else max(now, seen)


def seen_now(conn: Any) -> datetime.datetime:
    """This process's "now", but never before the newest commit ``conn``'s view sees.

    What a claimer compares due times with: a job it sees was put by a commit
    it sees, so the job's put time has passed even when this process's
    estimate of the database's clock lags (a busy process measures it late).
    """
    now = clock.utcnow()
    if clock.is_pinned():
        return now
    seen = view_time(conn)
    return now if seen is None else max(now, seen)


def note_commit_of(obj: Any) -> None:
    """Learn the clock's offset from the commit that just wrote ``obj`` (clock.note_commit)."""
    serial = getattr(obj, "_p_serial", None)
    if isinstance(serial, bytes):
        clock.note_commit(serial, clock.local_now())


_LEARNING = object()  # marks a transaction that learns the clock at its commit


def learn_at_commit(obj: Any) -> None:
    """Learn the clock's offset when the transaction storing ``obj`` commits (once per transaction).

    So a process that only puts jobs (a web application, a script) keeps
    its times (``begin_after``) in the database's time from its second
    commit on.
    """
    jar = getattr(obj, "_p_jar", None)
    if jar is None or clock.is_pinned():
        return
    txn = jar.transaction_manager.get()
    try:
        txn.data(_LEARNING)
    except KeyError:
        txn.set_data(_LEARNING, True)
        txn.addAfterCommitHook(_learn, (obj,))


def _learn(committed: bool, obj: Any) -> None:
    if committed:
        note_commit_of(obj)
