"""Short reprs for log lines, records and listings: a job's arguments and results may
be large, private, or unable to show themselves.

A job's repr (which every log line about it carries) shows each argument in
at most :data:`ARGUMENT_LIMIT` characters and the whole call in at most
:data:`REPR_LIMIT`; a result is logged in at most :data:`RESULT_LIMIT`.
Containers are cut after a few items (``reprlib``), so a huge argument is
never rendered in full just to be cut.
"""

from __future__ import annotations

import reprlib
import sys
from typing import Any

ARGUMENT_LIMIT = 200
RESULT_LIMIT = 500
REPR_LIMIT = 1000


class _Prefixes(reprlib.Repr):
    """reprlib keeps both ends of a long string; a log line keeps the beginning only."""

    def repr_str(self, x: str, level: int) -> str:
        if len(x) <= self.maxstring:
            return repr(x)
        return f"{x[: self.maxstring]!r}...[{len(x)} chars]"

    def repr_bytes(self, x: bytes, level: int) -> str:
        if len(x) <= self.maxstring:
            return repr(x)
        return f"{x[: self.maxstring]!r}...[{len(x)} bytes]"

    def repr_instance(self, x: Any, level: int) -> str:
        try:
            return shorten(repr(x), self.maxother)
        except Exception:  # an odd __repr__
            return f"<{type(x).__name__} object at {id(x):#x}>"


_repr = _Prefixes()
_repr.maxlevel = 3
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxfrozenset = _repr.maxdeque = 10
_repr.maxdict = 10
_repr.maxarray = 10
_repr.maxstring = ARGUMENT_LIMIT
_repr.maxlong = 60
_repr.maxother = ARGUMENT_LIMIT


def shorten(text: str, limit: int) -> str:
    """``text``, cut to ``limit`` characters with a note of its full length if longer."""
    if len(text) <= limit:
        return text
    note = f"...[{len(text)} chars]"
    return text[: max(limit - len(note), 0)] + note


def one_line(text: Any, limit: int) -> str:
    """``text`` on one line (its whitespace runs made single spaces), cut to ``limit`` with "…"."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


def short_repr(value: Any, limit: int = ARGUMENT_LIMIT) -> str:
    """A repr of ``value`` of at most ``limit`` characters (containers cut after 10 items).

    Never raises: a job's result or argument is user data, and its broken
    ``__repr__`` must not break the worker or the tool that shows it.
    """
    try:
        text = _repr.repr(value)
    except Exception as error:
        return f"<unrepresentable {type(value).__qualname__}: {type(error).__name__}>"
    return shorten(text, limit)


def dotted_name(value: Any) -> str:
    """``module.qualname`` of a class or function; zasync's public ones as ``zasync.Name``.

    Where a class lives inside the package is an implementation detail (and may
    move): reprs, logs and listings name it the way users import it.
    """
    module = str(getattr(value, "__module__", None) or "?")
    qualname = str(getattr(value, "__qualname__", None) or getattr(value, "__name__", "?"))
    if module.startswith("zasync."):
        package = sys.modules.get("zasync")
        if package is not None and getattr(package, qualname, None) is value:
            return f"zasync.{qualname}"
    return f"{module}.{qualname}"
