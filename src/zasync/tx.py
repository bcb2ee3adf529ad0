"""Committing through errors: the error families and the retry loops.

Every commit zasync makes for a job goes through one of the helpers here:

* :func:`never_fail` retries forever: conflicts at once, everything else
  after a growing backoff.  Used where giving up would lose a job's state
  (storing a result, completing callbacks).
* :func:`try_transaction_five_times` gives up after five conflicts or on any
  other error, returning a :class:`~zasync.failure.Failure`.  Used by the
  dispatcher's own bookkeeping, which it simply tries again on its next poll.
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import transaction
from ZODB.POSException import POSKeyError, StorageError, TransactionError

from zasync import _counters, clock
from zasync.failure import Failure

events_log = logging.getLogger("zasync.events")
trace_log = logging.getLogger("zasync.trace")

T = TypeVar("T")

#: Never swallowed: aborted and re-raised wherever they appear.
EXPLOSIVE_ERRORS: tuple[type[BaseException], ...] = (SystemExit, KeyboardInterrupt)

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


def backoff(attempt: int) -> float:
    """Seconds to wait before the ``attempt``-th retry (1-based) of a system error."""
    return min(MAX_BACKOFF, INITIAL_BACKOFF + (attempt - 1) * BACKOFF_INCREMENT)


def _abort(tm: transaction.TransactionManager) -> None:
    try:
        tm.abort()
    except Exception:  # the storage may be gone; the next attempt will tell
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
        events_log.info("aborted while the storage is unreachable (%s)", type(e).__name__)


Identifier = str | Callable[[], str]


def _text(identifier: Identifier) -> str:
    """Identifiers may be callables, so that building them costs nothing unless logged."""
    return identifier if isinstance(identifier, str) else identifier()


#: How many times :func:`never_fail` tries a call that fails with an error of
#: the code (neither a conflict nor a storage error) before re-raising it.
BOOKKEEPING_TRIES = 5


def never_fail(
    call: Callable[[], T], identifier: Identifier, tm: Any, limit: int | None = BOOKKEEPING_TRIES
) -> T:
    """Run ``call()`` and commit, repeating until the commit succeeds.

    Transaction errors are retried at once (a warning every 5th time).
    Storage errors (disconnects, I/O, a full disk) are logged (ERROR, on the
    1st and every 10th occurrence) and retried after a backoff of 5 s growing
    to 60 s, for as long as they last.  ``SystemExit`` and
    ``KeyboardInterrupt`` abort and propagate.

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
            result = call()
            tm.commit()
        except EXPLOSIVE_ERRORS:
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
            if other == 1 or other % 10 == 0:
                events_log.log(
                    logging.ERROR if is_system else logging.CRITICAL,
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


def _log_failure(what: str, text: str) -> None:
    """ERROR for a failed unit of bookkeeping, at most once per interval for the same unit.

    A storage that keeps failing (a full disk) fails every poll's claim; one
    traceback per poll would flood the log while telling nothing new.
    """
    now = time.monotonic()
    with _failure_logs_lock:
        last, suppressed = _failure_logs.get(what, (None, 0))
        if last is not None and now - last < FAILURE_LOG_INTERVAL:
            _failure_logs[what] = (last, suppressed + 1)
            return
        _failure_logs[what] = (now, 0)
    also = f" ({suppressed} more such failures since the last report)" if suppressed else ""
    events_log.error("%s %s%s", what, text, also)


def try_transaction_five_times(
    call: Callable[[], T],
    identifier: Identifier,
    tm: Any,
    reraise: tuple[type[BaseException], ...] = (),
) -> T | Failure:
    """Run ``call()`` and commit; retry up to five transaction errors, else return a Failure.

    Errors in ``reraise`` abort and propagate instead (the dispatcher's poll
    loop handles a lost database itself, with a backoff).  Failures are
    logged at ERROR, the same ``identifier``'s at most once a minute.
    """
    for attempt in range(1, 6):
        try:
            result = call()
            tm.commit()
        except EXPLOSIVE_ERRORS:
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
        except Exception:
            failure = Failure()
            _abort(tm)
            _log_failure(_text(identifier), f"failed:\n{failure.getTraceback()}")
            return failure
        else:
            return result
    raise AssertionError("unreachable")  # pragma: no cover
