"""A job's arguments, stored inside the job's own database record.

Separate persistent objects for the arguments would cost two more object
loads for every job run and two more records for every job put.  Instead the
job keeps a plain list and dict in its own state, and ``job.args`` and
``job.kwargs`` are views that mark the job changed when they are mutated, so
``job.args.append(x)`` is stored like any attribute change.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping, MutableSequence
from typing import Any, overload


class _View:
    """What both views share: the owning job and the stored container."""

    __slots__ = ("_data", "_owner")

    def __init__(self, owner: Any, data: Any) -> None:
        self._owner = owner
        self._data = data

    def _changed(self) -> None:
        self._owner._p_changed = True

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _View):
            other = other._data
        return bool(self._data == other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._data)

    def __reduce__(self) -> Any:
        # A view that ends up inside some pickle is stored as its plain value.
        return (type(self._data), (self._data,))


class ArgumentList(_View, MutableSequence[Any]):
    """``job.args``: the positional arguments, a list stored in the job."""

    __slots__ = ()

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self._data[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        self._data[index] = value
        self._changed()

    def __delitem__(self, index: Any) -> None:
        del self._data[index]
        self._changed()

    def insert(self, index: int, value: Any) -> None:
        """Insert ``value`` before ``index``, like ``list.insert``."""
        self._data.insert(index, value)
        self._changed()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)


class ArgumentMapping(_View, MutableMapping[str, Any]):
    """``job.kwargs``: the keyword arguments, a dict stored in the job."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value
        self._changed()

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._changed()

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)
