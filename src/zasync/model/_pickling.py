"""Refusing, at ``put`` time, what a worker could never load.

A job is pickled into the database when its transaction commits; a lambda or a
local function would fail then, or worse, later in a worker.  This check
pickles the callable and arguments at once (stopping at persistent objects,
which ZODB stores separately) and turns any error into a clear message.
"""

from __future__ import annotations

import io
import pickle
import types
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import persistent

from zasync.interfaces import NotPicklableError


class StorableJob(Protocol):
    """What the check reads of a job: its callable and arguments."""

    _callable_root: Any
    args: Sequence[Any]
    kwargs: Mapping[str, Any]


class _FromMain(pickle.PicklingError):
    """A function or class of the ``__main__`` module: no worker can import it."""


class _StopAtPersistent(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, persistent.Persistent):
            return id(obj)
        return None

    def reducer_override(self, obj: Any) -> Any:
        # Pickled by reference, a function, class or method of the putting
        # script is "__main__.name": every worker would load its own __main__.
        if isinstance(obj, type | types.FunctionType | types.BuiltinFunctionType) and (
            getattr(obj, "__module__", None) == "__main__"
        ):
            raise _FromMain(f"{obj.__qualname__} is defined in the __main__ module")
        return NotImplemented


def pickling_error(value: Any) -> Exception | None:
    """The error pickling ``value`` would raise in a commit (persistent objects aside), or None."""
    try:
        _StopAtPersistent(io.BytesIO(), protocol=3).dump(value)
    except Exception as error:
        return error
    return None


def _check(label: str, value: Any, job: StorableJob) -> None:
    try:
        _StopAtPersistent(io.BytesIO(), protocol=3).dump(value)
    except _FromMain as e:
        raise NotPicklableError(
            f"{label} of {job!r} cannot be run by a worker: {e}, the script that puts "
            "the job, which workers do not import. Move it to an importable module "
            "(one that workers have too) and import it from there."
        ) from None
    except Exception as e:
        raise NotPicklableError(
            f"{label} of {job!r} cannot be stored in the database ({e}). "
            "Use a function defined at module level (not a lambda or a nested "
            "function) and arguments that pickle: plain data or persistent objects."
        ) from e


def check_storable(job: StorableJob) -> None:
    """Raise NotPicklableError if the job's callable or arguments cannot be pickled."""
    _check("the callable", job._callable_root, job)
    for index, arg in enumerate(job.args):
        _check(f"argument {index}", arg, job)
    for name, arg in job.kwargs.items():
        _check(f"keyword argument {name!r}", arg, job)
