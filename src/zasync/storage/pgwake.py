"""Being woken by PostgreSQL when RelStorage commits, instead of polling for changes.

RelStorage tells a process nothing about other processes' commits: each new
transaction asks the database.  A worker therefore checks its queues for
changes every ``change_poll_interval`` (50 ms), which is most of the delay
from a put on PostgreSQL to its job's start.

A :class:`CommitListener` removes that delay.  It installs (once per
database, idempotently) a statement-level trigger on RelStorage's
``object_state`` table that sends ``NOTIFY zasync_commit`` whenever a
transaction writes objects, and listens for it on a connection of its own.
PostgreSQL delivers a notification when the writing transaction commits,
to every listener, whichever process or program committed.  The change
poller then looks at once instead of at its next tick; the tick stays as a
fallback (a listener that lost its connection, a trigger someone dropped).

Stored schema: the function ``zasync_notify_commit()`` and the trigger
``zasync_commit_notify`` on ``object_state``.  ``DROP TRIGGER
zasync_commit_notify ON object_state; DROP FUNCTION zasync_notify_commit();``
removes both; workers then poll as before.
"""

from __future__ import annotations

import logging
import select
from typing import Any

log = logging.getLogger("zasync.events")

#: The channel of the notifications.
CHANNEL = "zasync_commit"

_INSTALL = f"""
CREATE OR REPLACE FUNCTION zasync_notify_commit() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'zasync_commit_notify') THEN
        CREATE TRIGGER zasync_commit_notify
            AFTER INSERT OR UPDATE ON object_state
            FOR EACH STATEMENT EXECUTE FUNCTION zasync_notify_commit();
    END IF;
END;
$$;
"""


def relstorage_dsn(storage: Any) -> str | None:
    """The libpq DSN of a RelStorage storage on PostgreSQL; None for any other storage."""
    adapter = getattr(storage, "_adapter", None)
    if adapter is None or type(adapter).__module__.split(".")[-2:-1] != ["postgresql"]:
        return None
    dsn = getattr(adapter, "_dsn", None)
    return dsn if isinstance(dsn, str) else None


class CommitListener:
    """Waits for ``NOTIFY zasync_commit`` from PostgreSQL (see the module documentation)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: Any = None

    def _connect(self) -> Any:
        import psycopg2  # RelStorage's own driver: installed with zasync[postgresql]

        conn = psycopg2.connect(self._dsn)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(_INSTALL)
            cursor.execute(f"LISTEN {CHANNEL}")
        return conn

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True if a commit was notified (or nothing can tell).

        Errors (the server restarting) close the connection and return False
        after the timeout, as a plain sleep would; the next call connects again.
        """
        try:
            if self._conn is None:
                self._conn = self._connect()
                return True  # a commit may have come before the listening began
            conn = self._conn
            if not conn.notifies:
                ready, _, _ = select.select([conn], [], [], timeout)
                if not ready:
                    return False
                conn.poll()
            notified = bool(conn.notifies)
            del conn.notifies[:]
            return notified
        except Exception:
            log.debug("commit listener: PostgreSQL connection failed", exc_info=True)
            self.close()
            select.select([], [], [], timeout)
            return False

    def close(self) -> None:
        """Stop listening."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("commit listener: closing failed", exc_info=True)
