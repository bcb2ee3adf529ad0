"""Reprs that can neither fail nor run on: for logs, records and listings.

A job's result or argument is user data: its ``__repr__`` may raise, and its
text may be megabytes long.  Neither may break the worker that shows it, nor
flood a log with it.
"""

from __future__ import annotations

import reprlib

#: The longest text :func:`safe_repr` returns by default.
DEFAULT_LIMIT = 500

_short = reprlib.Repr()
_short.maxstring = 200
_short.maxother = 200
_short.maxlong = 60
_short.maxlist = _short.maxtuple = _short.maxdict = _short.maxset = 20


def safe_repr(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """``repr(value)``, shortened to about ``limit`` characters, never raising."""
    try:
        text = _short.repr(value)
    except Exception as error:
        return f"<unrepresentable {type(value).__qualname__}: {type(error).__name__}>"
    if len(text) > limit:
        return f"{text[: max(0, limit - 20)]}...[{len(text)} chars]"
    return text
