"""Committing through errors: the error families and the retry loops.

Every commit zasync makes for a job goes through one of the helpers here:

* :func:`never_fail` retries forever: conflicts at once, everything else
  after a growing backoff.  Used where giving up would lose a job's state
  (storing a result, completing callbacks).
* :func:`try_transaction_five_times` gives up after five conflicts or on any
  other error, returning a :class:`~zasync.model.failure.Failure`.  Used by the
  dispatcher's own bookkeeping, which it simply tries again on its next poll.

Work outside the caller's transaction gets a connection of its own:

* :func:`fresh_connection`: a connection and transaction manager for a block,
  aborted and closed after it (read-only work, or work that commits itself);
* :func:`read_in_fresh_connection`: one query in such a connection;
* :func:`commit_in_fresh_connection`: one unit of work committed, conflicts
  retried a few times (what an operator's action needs);
* :func:`in_fresh_connection`: one object's work, committed or not, riding out
  a short outage.

Every backoff goes through :func:`zasync.clock.sleep`, so tests control time.  (Waits
for something outside, with a deadline, use real time.)
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import transaction
from transaction.interfaces import DoomedTransaction
from ZODB.POSException import POSKeyError, StorageError, TransactionError

from zasync import _counters, clock
from zasync.interfaces import ZasyncError
from zasync.model import _context
from zasync.model.failure import Failure

events_log = logging.getLogger("zasync.events")
trace_log = logging.getLogger("zasync.trace")

T = TypeVar("T")

#: Never swallowed: aborted and re-raised wherever they appear.
EXPLOSIVE_ERRORS: tuple[type[BaseException], ...] = (SystemExit, KeyboardInterrupt)
#: Aborted and re-raised by the retrying helpers: a doomed transaction can never commit
#: (a thread whose job was stopped at its time limit gets only doomed ones).
UNRETRYABLE_ERRORS: tuple[type[BaseException], ...] = (*EXPLOSIVE_ERRORS, DoomedTransaction)

#: Conflicts and other transaction errors: retrying the transaction may succeed.
TRANSACTION_ERRORS: tuple[type[BaseException], ...] = (TransactionError,)

INITIAL_BACKOFF = 5.0
BACKOFF_INCREMENT = 5.0
MAX_BACKOFF = 60.0

_OPTIONAL_DISCONNECT_ERRORS = (
    ("ZEO.Exceptions", "ClientDisconnected"),
    ("relstorage.adapters.interfaces", "ReplicaClosedException"),
    ("psycopg2", "OperationalError"),
    ("psycopg2", "InterfaceError"),
)


@functools.cache
def disconnect_errors() -> tuple[type[BaseException], ...]:
    """Errors meaning the storage went away (ZEO, RelStorage drivers).

    Only the packages that are installed contribute; the tuple is computed once.
    """
    found: list[type[BaseException]] = []
    for module_name, attribute in _OPTIONAL_DISCONNECT_ERRORS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        cls = getattr(module, attribute, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def system_errors() -> tuple[type[BaseException], ...]:
    """Errors of the storage rather than of the code: disconnects, storage errors, I/O.

    ``StorageError`` covers missing objects and RelStorage's commit-lock
    timeouts; ``OSError`` a full disk and I/O errors at commit.  Waiting may
    cure them, so they are retried with a backoff for as long as they last.
    """
    return (*disconnect_errors(), POSKeyError, StorageError, OSError)


class _StorageLoadFailures(logging.Filter):
    """Drops ZODB's traceback for a load that failed because the storage fails.

    ZODB logs every failed load at ERROR with a traceback before raising;
    zasync waits such failures out and reports them itself, once per interval
    (:func:`report_storage_failure`).  Other load failures are kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Couldn't load state for"):
            return True
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, system_errors())


def quiet_storage_load_failures() -> None:
    """Install :class:`_StorageLoadFailures` on ZODB's connection logger (once)."""
    connection_log = logging.getLogger("ZODB.Connection")
    if not any(isinstance(f, _StorageLoadFailures) for f in connection_log.filters):
        connection_log.addFilter(_StorageLoadFailures())


def backoff(attempt: int) -> float:
    """Seconds to wait before the ``attempt``-th retry (1-based) of a system error."""
    return min(MAX_BACKOFF, INITIAL_BACKOFF + (attempt - 1) * BACKOFF_INCREMENT)


def _abort(tm: transaction.TransactionManager) -> None:
    try:
        tm.abort()
    except system_errors() as e:  # the storage is what fails; the next attempt will tell
        trace_log.debug("aborted while the storage fails (%s)", type(e).__name__)
    except Exception:
        events_log.exception("abort failed")


def abort_quietly(tm: Any) -> None:
    """Abort, even if the storage has gone away.

    RelStorage polls the database at the end of an abort; with the server
    down, that raises although the transaction is over.  The next transaction
    polls again (and waits out the outage where it must).
    """
    try:
        tm.abort()
    except disconnect_errors() as e:
        # Whatever met the outage reports it; one line per abort would flood the log.
        trace_log.debug("aborted while the storage is unreachable (%s)", type(e).__name__)


Identifier = str | Callable[[], str]


def _text(identifier: Identifier) -> str:
    """Identifiers may be callables, so that building them costs nothing unless logged."""
    return identifier if isinstance(identifier, str) else identifier()


#: How many times :func:`never_fail` tries a call that fails with an error of
#: the code (neither a conflict nor a storage error) before re-raising it.
BOOKKEEPING_TRIES = 5


def never_fail(
    call: Callable[[], T],
    identifier: Identifier,
    tm: Any,
    limit: int | None = BOOKKEEPING_TRIES,
    note: str = "",
) -> T:
    """Run ``call()`` and commit, repeating until the commit succeeds.

    ``note`` goes in each attempt's transaction description (what ``fsdump``
    and undo logs show).

    Transaction errors are retried at once (a warning every 5th time).
    Storage errors (disconnects, I/O, a full disk) are reported in one line
    (:func:`report_storage_failure`: once per interval for the whole process)
    and retried after a backoff of 5 s growing to 60 s, for as long as they
    last.  ``SystemExit`` and ``KeyboardInterrupt`` abort and propagate.

    Any other error is one of the code (a value that cannot be pickled, a
    closed connection, a policy's bug): retrying cannot cure it, and retrying
    for ever would wedge the thread.  It is tried ``limit`` times, at once,
    and then logged CRITICAL and re-raised for the caller's last resort
    (``limit=None``: retried for ever with the backoff).
    """
    conflicts = 0
    other = 0
    while True:
        try:
            if note:
                tm.get().note(note)
            result = call()
            tm.commit()
        except UNRETRYABLE_ERRORS:
            _abort(tm)
            raise
        except TRANSACTION_ERRORS as error:
            _abort(tm)
            _counters.count_conflict("bookkeeping", error)
            conflicts += 1
            if conflicts % 5 == 0:
                events_log.warning(
                    "%s has had %d consecutive transaction errors", _text(identifier), conflicts
                )
        except Exception as error:
            _abort(tm)
            other += 1
            is_system = isinstance(error, system_errors())
            if limit is not None and not is_system:
                if other >= limit:
                    events_log.critical(
                        "%s failed %d times; giving up", _text(identifier), other, exc_info=True
                    )
                    raise
                continue
            if is_system:
                report_storage_failure(_text(identifier), error)
            elif other == 1 or other % 10 == 0:
                events_log.critical(
                    "%s failed (attempt %d); will retry",
                    _text(identifier),
                    other,
                    exc_info=True,
                )
            clock.sleep(backoff(other))
        else:
            return result


#: The same bookkeeping failure is logged at most once in this many seconds.
FAILURE_LOG_INTERVAL = 60.0
_failure_logs: dict[str, tuple[float, int]] = {}  # identifier -> (last logged, since then)
_failure_logs_lock = threading.Lock()


def _log_failure(what: str, text: str, key: str | None = None, level: int = logging.ERROR) -> None:
    """Log a failed unit of work, at most once per interval for the same ``key`` (``what``).

    A storage that keeps failing (a full disk) fails every poll's claim; one
    traceback per poll would flood the log while telling nothing new.
    """
    key = what if key is None else key
    now = time.monotonic()
    with _failure_logs_lock:
        last, suppressed = _failure_logs.get(key, (None, 0))
        if last is not None and now - last < FAILURE_LOG_INTERVAL:
            _failure_logs[key] = (last, suppressed + 1)
            return
        _failure_logs[key] = (now, 0)
    also = f" ({suppressed} more such failures since the last report)" if suppressed else ""
    events_log.log(level, "%s %s%s", what, text, also)


#: The key under which all storage failures of the process share one rate limit.
STORAGE_FAILURE_KEY = "the storage"


def report_storage_failure(what: str, error: BaseException) -> None:
    """One line for a storage error, at most once per interval for the whole process.

    A full disk or a lost database server fails every commit of every thread
    at once; what fails is the storage, not the unit that met it, so one line
    per interval tells all there is (a traceback would only show the
    storage's internals).  A lost server is a WARNING: it usually comes back
    by itself.  Other storage errors (a full disk, I/O errors) are ERRORs:
    someone has to act.
    """
    level = logging.WARNING if isinstance(error, disconnect_errors()) else logging.ERROR
    _log_failure(
        f"{what} failed: the storage fails ({_one_line(error)});",
        "retrying with a backoff while it lasts",
        key=STORAGE_FAILURE_KEY,
        level=level,
    )


def _one_line(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:  # a broken __str__ must not break the report
        text = ""
    first = text.splitlines()[0] if text.strip() else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def try_transaction_five_times(
    call: Callable[[], T],
    identifier: Identifier,
    tm: Any,
    reraise: tuple[type[BaseException], ...] = (),
    note: str = "",
) -> T | Failure:
    """Run ``call()`` and commit; retry up to five transaction errors, else return a Failure.

    Errors in ``reraise`` abort and propagate instead (the dispatcher's poll
    loop handles a lost database itself, with a backoff).  Failures are
    logged at ERROR, the same ``identifier``'s at most once a minute; storage
    errors in one line (:func:`report_storage_failure`).  ``note`` goes in
    each attempt's transaction description.
    """
    for attempt in range(1, 6):
        try:
            if note:
                tm.get().note(note)
            result = call()
            tm.commit()
        except UNRETRYABLE_ERRORS:
            _abort(tm)
            raise
        except reraise:
            _abort(tm)
            raise
        except TRANSACTION_ERRORS as error:
            failure = Failure()
            _abort(tm)
            _counters.count_conflict("bookkeeping", error)
            if attempt == 5:
                _log_failure(_text(identifier), "failed five times with transaction errors")
                return failure
        except Exception as error:
            failure = Failure()
            _abort(tm)
            if isinstance(error, system_errors()):
                report_storage_failure(_text(identifier), error)
            else:
                _log_failure(_text(identifier), f"failed:\n{failure.getTraceback()}")
            return failure
        else:
            return result
    raise AssertionError("unreachable")  # pragma: no cover


def in_fresh_connection(db: Any, oid: bytes, work: Callable[[Any], T], commit: bool) -> T:
    """Run ``work(obj)`` on the object ``oid`` in a connection and transaction of its own.

    The caller's transaction is not touched.  With ``commit``, the work is
    committed, retried on conflicts (10 tries); a database that stays
    unreachable raises :class:`~zasync.interfaces.ZasyncError` after 10 tries
    with a growing pause.  Job code calls this (``zasync.local``): a job
    stopped at its time limit is not interrupted in the middle of it.
    """
    attempts = 0
    while True:
        pause = 0.0
        with _context.critical():
            tm = transaction.TransactionManager()
            conn = db.open(transaction_manager=tm)
            try:
                tm.begin()
                result = work(conn.get(oid))
                if commit:
                    tm.commit()
                return result
            except TRANSACTION_ERRORS:
                tm.abort()
                attempts += 1
                if attempts >= 10:
                    raise
            except disconnect_errors():
                tm.abort()
                attempts += 1
                if attempts >= 10:
                    raise ZasyncError("the database stayed unreachable") from None
                pause = min(0.5 * attempts, 5)
            finally:
                tm.abort()
                conn.close()
        if pause:
            clock.sleep(pause)


@contextlib.contextmanager
def fresh_connection(db: Any) -> Iterator[tuple[Any, transaction.TransactionManager]]:
    """A connection of ``db`` with a transaction manager of its own, for a ``with`` block.

    Whatever the block leaves uncommitted is aborted; the connection goes back
    to the pool.  The caller's transaction is not touched.
    """
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    try:
        yield conn, tm
    finally:
        abort_quietly(tm)
        conn.close()


def read_in_fresh_connection(db: Any, query: Callable[[Any], T]) -> T:
    """Return ``query(connection)`` run on the newest state, in a connection of its own."""
    with fresh_connection(db) as (conn, tm):
        tm.begin()
        return query(conn)


def commit_in_fresh_connection(
    db: Any,
    work: Callable[[Any, transaction.TransactionManager], T],
    tries: int = 5,
    note: str = "",
) -> T:
    """Run ``work(connection, tm)`` and commit, in a connection of its own.

    A conflict runs the work again on fresh state (``tries`` times in all,
    then the ConflictError propagates); any other error aborts and propagates
    at once.  ``note`` is written in the transaction's description, where
    ``fsdump`` and undo logs show it.
    """
    with fresh_connection(db) as (conn, tm):
        for attempt in range(1, tries + 1):
            txn = tm.begin()
            if note:
                txn.note(note)
            try:
                result = work(conn, tm)
                tm.commit()
                return result
            except TRANSACTION_ERRORS:
                tm.abort()
                if attempt == tries:
                    raise
            except BaseException:
                tm.abort()
                raise
    raise AssertionError("unreachable")  # pragma: no cover: the loop returns or raises
