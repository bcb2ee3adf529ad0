"""A picklable, sanitized record of an exception: the result of a failed job.

A :class:`Failure` keeps the exception type and a copy of its value, the
formatted traceback text and a stack of frames whose local and global values
have been turned into strings.  It keeps no traceback object and no frame, so
storing one in the database or keeping one in memory pins nothing.
"""

from __future__ import annotations

import importlib
import io
import pickle
import reprlib
import sys
import traceback
import types
from typing import IO, Any, NoReturn

from zope.interface import implementer

from zasync.errors import InvalidValueError
from zasync.interfaces import IFailure

#: One frame of a sanitized stack: name, file, line, locals and globals as strings.
Frame = tuple[str, str, int, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]

_repr = reprlib.Repr()
_repr.maxstring = 200
_repr.maxother = 200
_repr.maxlong = 60


def _safe_repr(value: object) -> str:
    try:
        return _repr.repr(value)
    except Exception as e:  # a broken __repr__ must not break failure capture
        return f"<unrepresentable {type(value).__qualname__}: {type(e).__name__}>"


def qualified_name(cls: type) -> str:
    """Return ``module.QualName`` of a class, as failures show it."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _import_class(module: str, qualname: str) -> type | None:
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    return obj if isinstance(obj, type) else None


class _NoPersistentPickler(pickle.Pickler):
    """Refuses persistent objects, which must not be stored inside a failure."""

    def persistent_id(self, obj: object) -> None:
        if getattr(obj, "_p_oid", None) is not None or hasattr(obj, "_p_jar"):
            raise pickle.PicklingError("persistent object inside an exception")
        return None


def _round_trip(value: BaseException) -> BaseException | None:
    buffer = io.BytesIO()
    try:
        _NoPersistentPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
        copy = pickle.loads(buffer.getvalue())
    except Exception:
        return None
    return copy if isinstance(copy, BaseException) else None


class UnpicklableException(Exception):
    """Stands in for an exception that could not be copied into a failure.

    Its message is the ``repr`` of the original; ``Failure.type_name`` still
    names the original class.
    """


def _sanitize_value(value: BaseException) -> BaseException:
    copy = _round_trip(value)
    if copy is not None:
        return copy
    try:
        simpler = type(value)(*[_safe_repr(a) for a in value.args])
    except Exception:
        simpler = None
    if simpler is not None:
        copy = _round_trip(simpler)
        if copy is not None:
            return copy
    return UnpicklableException(f"{qualified_name(type(value))}: {_safe_repr(value)}")


def _sanitize_frames(tb: types.TracebackType | None) -> list[Frame]:
    frames: list[Frame] = []
    while tb is not None:
        frame = tb.tb_frame
        code = frame.f_code
        local_items = tuple((k, _safe_repr(v)) for k, v in frame.f_locals.items())
        # Only the globals the code refers to: the whole module namespace of
        # every frame would make each stored failure needlessly large.
        global_items = tuple(
            (name, _safe_repr(frame.f_globals[name]))
            for name in code.co_names
            if name in frame.f_globals
        )
        frames.append((code.co_name, code.co_filename, tb.tb_lineno, local_items, global_items))
        tb = tb.tb_next
    return frames


@implementer(IFailure)
class Failure:
    """An exception captured as data.

    ``Failure()`` inside an ``except`` block captures the exception being
    handled; ``Failure(exc)`` captures ``exc`` (with its traceback if it was
    raised, with no frames if it was never raised).
    """

    tb = None  # never a live traceback: kept for compatibility with Twisted's API

    def __init__(self, exc: BaseException | None = None) -> None:
        if exc is None:
            current = sys.exc_info()[1]
            if current is None:
                raise InvalidValueError(
                    "Failure() needs an exception, or must be made in an except block"
                )
            exc = current
        cls = type(exc)
        self.type_name: str = qualified_name(cls)
        importable = _import_class(cls.__module__, cls.__qualname__)
        self.type: type = cls if importable is cls else UnpicklableException
        self.value: BaseException = _sanitize_value(exc)
        if self.type is UnpicklableException:
            self.value = UnpicklableException(f"{self.type_name}: {_safe_repr(exc)}")
        self.stack: list[Frame] = _sanitize_frames(exc.__traceback__)
        self._traceback_text: str = "".join(traceback.format_exception(exc))

    # -- inspection ------------------------------------------------------------

    def _matches(self, candidate: type | str) -> bool:
        if isinstance(candidate, str):
            wanted = _current_name(candidate)
            # The type and, when it could be kept, its bases: "builtins.OSError"
            # matches a ConnectionResetError as the class OSError does.
            names = [_current_name(self.type_name)]
            if self.type is not UnpicklableException:
                names += [qualified_name(base) for base in self.type.__mro__[1:]]
            return any(wanted in (name, name.rsplit(".", 1)[-1]) for name in names)
        return isinstance(candidate, type) and issubclass(self.type, candidate)

    def check(self, *exception_types: type | str) -> type | str | None:
        """Return the first of ``exception_types`` that this failure is, else None.

        Types may be classes or dotted names (``'builtins.KeyError'``).
        """
        for candidate in exception_types:
            if self._matches(candidate):
                return candidate
        return None

    def trap(self, *exception_types: type | str) -> type | str:
        """Return the matching type, or re-raise the stored exception if none matches."""
        found = self.check(*exception_types)
        if found is None:
            self.raiseException()
        return found

    def raiseException(self) -> NoReturn:
        """Raise (a copy of) the stored exception."""
        raise self.value

    def getErrorMessage(self) -> str:
        """Return ``str()`` of the exception value."""
        return str(self.value)

    def getTraceback(self) -> str:
        """Return the traceback text in Python's format, chained exceptions included."""
        return self._traceback_text

    def printTraceback(self, file: IO[str] | None = None) -> None:
        """Write the traceback text to ``file`` (default ``sys.stderr``)."""
        (file or sys.stderr).write(self.getTraceback())

    # Twisted's names above; these are the same methods.
    raise_exception = raiseException
    get_error_message = getErrorMessage
    get_traceback = getTraceback
    print_traceback = printTraceback

    def __repr__(self) -> str:
        return f"<zasync.Failure {self.type_name}>"

    def __str__(self) -> str:
        message = self.getErrorMessage()
        return f"{self.type_name}: {message}" if message else self.type_name


#: Where zasync's exceptions were defined before ``zasync.errors``: failures
#: stored then name them there, and callers may still check those names.
_OLD_ERRORS_PREFIX = "zasync.interfaces."


def _current_name(dotted: str) -> str:
    """``zasync.interfaces.CancelledError`` -> ``zasync.errors.CancelledError``; others as given."""
    if dotted.startswith(_OLD_ERRORS_PREFIX):
        return "zasync.errors." + dotted[len(_OLD_ERRORS_PREFIX) :]
    return dotted


def is_failure(value: object) -> bool:
    """True if ``value`` is a :class:`Failure`."""
    return isinstance(value, Failure)
