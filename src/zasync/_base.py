"""The persistent base class of zasync's containers and jobs."""

from __future__ import annotations

from typing import Any

import persistent


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
    """``module.Class (oid N, db 'name')``: how jobs show persistent objects."""
    cls = type(obj)
    oid = oid_int(obj)
    db = database_name(obj)
    return (
        f"{cls.__module__}.{cls.__qualname__} "
        f"(oid {'?' if oid is None else oid}, db {'?' if db is None else repr(db)})"
    )
