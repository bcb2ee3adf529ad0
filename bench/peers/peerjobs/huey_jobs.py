"""huey's benchmark tasks, on SQLite storage (``SqliteHuey``, file named by ``PEERS_HUEY_DB``)."""

from __future__ import annotations

import os

from huey import SqliteHuey

from peerjobs.common import record_drain, record_sample

huey = SqliteHuey("peers", filename=os.environ.get("PEERS_HUEY_DB", "huey.db"))


@huey.task()
def drain() -> None:
    """A drain job."""
    record_drain()


@huey.task()
def sample(i: int) -> None:
    """A latency job for sample ``i``."""
    record_sample(i)
