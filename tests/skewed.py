"""Run a module with zasync's clock skewed: ``python skewed.py SECONDS -m MODULE ARGS...``.

A test-only wrapper for real worker and client processes whose clock runs
``SECONDS`` ahead (or behind, if negative) of the machine's.  It replaces the
``datetime`` module that :mod:`zasync.clock` reads its time from with one
whose ``datetime.now`` is skewed; the database server's clock (which chooses
transaction ids) is untouched, as when two machines disagree.
"""

from __future__ import annotations

import datetime
import runpy
import sys
from typing import Any

import zasync.clock


def skew(seconds: float) -> None:
    """Make ``zasync.clock`` read the time ``seconds`` off the real clock."""
    offset = datetime.timedelta(seconds=seconds)

    class SkewedDatetime(datetime.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime.datetime:  # type: ignore[override]
            return datetime.datetime.now(tz) + offset

    class SkewedModule:
        datetime = SkewedDatetime

        def __getattr__(self, name: str) -> Any:
            return getattr(datetime, name)

    zasync.clock.datetime = SkewedModule()  # type: ignore[assignment]


def main() -> None:
    seconds, flag, module, *args = sys.argv[1:]
    if flag != "-m":
        raise SystemExit("usage: skewed.py SECONDS -m MODULE [ARGS...]")
    skew(float(seconds))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
