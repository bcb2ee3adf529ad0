"""The persistent base class of zasync's containers and jobs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import persistent

from zasync._logtext import dotted_name
from zasync.errors import ConfigurationError


class Base(persistent.Persistent):  # type: ignore[misc]  # persistent is untyped
    """A persistent object with a ``parent``, of which ``__parent__`` is an alias."""

    parent: Any = None

    @property
    def __parent__(self) -> Any:
        return self.parent

    @__parent__.setter
    def __parent__(self, value: Any) -> None:
        self.parent = value


def oid_int(obj: object) -> int | None:
    """The object's oid as an unsigned integer, or None if it is not stored."""
    oid = getattr(obj, "_p_oid", None)
    return None if oid is None else int.from_bytes(oid, "big")


def database_name(obj: object) -> str | None:
    """The name of the database the object is stored in, or None."""
    jar = getattr(obj, "_p_jar", None)
    if jar is None:
        return None
    return str(jar.db().database_name)


def identity_repr(obj: object) -> str:
    """``zasync.Job (oid N, db 'name')``: how jobs show persistent objects."""
    oid = oid_int(obj)
    db = database_name(obj)
    return (
        f"{dotted_name(type(obj))} "
        f"(oid {'?' if oid is None else oid}, db {'?' if db is None else repr(db)})"
    )


def check_size(value: Any, what: str) -> int:
    """Validate a size (of a quota or an agent): an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{what} size must be an integer >= 0, not {value!r}")
    return value


#: The most threads one agent may run in one worker: a sanity bound (each
#: thread keeps a database connection), shared by the worker's settings, the
#: CLI and the dashboard.
MAX_THREADS = 1000


def check_threads(value: Any, what: str = "agent threads") -> int:
    """Validate an agent's thread count: an integer from 1 to MAX_THREADS."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THREADS:
        raise ConfigurationError(
            f"{what} must be an integer from 1 to {MAX_THREADS}, not {value!r}"
        )
    return value


class MappingBase(Base):
    """Read access to a sorted mapping kept in ``self._data`` (an OOBTree).

    Subclasses say which keys are acceptable with ``_accepts``: a key of another
    type is simply absent, rather than a TypeError from the BTree.
    """

    _data: Any

    def _accepts(self, key: object) -> bool:
        return True

    def __getitem__(self, key: Any) -> Any:
        if not self._accepts(key):
            raise KeyError(key)
        return self._data[key]

    def get(self, key: Any, default: Any = None) -> Any:
        """The value for ``key``, or ``default``."""
        if not self._accepts(key):
            return default
        return self._data.get(key, default)

    def __contains__(self, key: object) -> bool:
        return self._accepts(key) and key in self._data

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._data.keys()))

    def __len__(self) -> int:
        return len(self._data)

    def keys(self) -> list[Any]:
        """The keys, sorted."""
        return list(self._data.keys())

    def values(self) -> list[Any]:
        """The values, sorted by key."""
        return list(self._data.values())

    def items(self) -> list[tuple[Any, Any]]:
        """(key, value) pairs, sorted by key."""
        return list(self._data.items())
