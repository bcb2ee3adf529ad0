"""Where the modules of 0.1.0.dev0 went, so that databases written by it keep loading.

ZODB stores every persistent object with the dotted path of its class, and
zasync stores some functions by path too (``addCallbacks`` wrappers, the steps
of ``serial``/``parallel``).  ZODB finds those paths with ``__import__`` and
``getattr``, so an old path keeps working as long as a module answers to it:
importing :mod:`zasync` registers each new module under its old name too.
This costs nothing (the modules are imported anyway) and works for every way
of opening a database, including ``ZODB.DB(...)`` without zasync's help.
"""

from __future__ import annotations

import importlib
import sys

#: Old module path -> new module path, for every module whose names a database may hold.
MOVED_MODULES: dict[str, str] = {
    "zasync.job": "zasync.model.job",
    "zasync.queue": "zasync.model.queue",
    "zasync.lanes": "zasync.model.lanes",
    "zasync.quota": "zasync.model.quota",
    "zasync.agent": "zasync.model.agent",
    "zasync.completed": "zasync.model.completed",
    "zasync.dispatchers": "zasync.model.dispatchers",
    "zasync.failure": "zasync.model.failure",
    "zasync.retry": "zasync.model.retry",
    "zasync.patterns": "zasync.model.patterns",
}


def register_old_paths() -> None:
    """Make each old module path import its new module (idempotent)."""
    for old, new in MOVED_MODULES.items():
        sys.modules.setdefault(old, importlib.import_module(new))
