"""The queues of a Zope site, wherever they are: in the content database or one of their own.

With ``database queues`` in ``<product-config zasync>``, the queues live in
the database named ``queues`` (a ``<zodb_db queues>`` of ``zope.conf``), so
that content commits and queue commits never touch the same records.  Code
that puts jobs asks for its queue through :func:`get_queue`, which finds
that database's connection beside the one of the object at hand.
"""

from __future__ import annotations

from typing import Any

from zasync.model.queue import Queue
from zasync.model.queue import get_queue as queue_in
from zasync.zope import settings as settings_module


def queue_connection(connection: Any, database: str | None = None) -> Any:
    """The connection to the queue database beside ``connection`` (``database``: its name).

    Without ``database``, the name configured for this instance (or
    ``connection`` itself when the queues live with the content).
    """
    name = database if database is not None else settings_module.load().database
    if name is None or name == connection.db().database_name:
        return connection
    return connection.get_connection(name)


def get_queue(context: Any, name: str = "", database: str | None = None) -> Queue:
    """The queue ``name`` of the site that ``context`` (a stored object) belongs to."""
    jar = getattr(context, "_p_jar", None)
    if jar is None:
        raise ValueError(f"{context!r:.60} is not stored in a database: use an object of the site")
    return queue_in(queue_connection(jar, database), name)
