"""procrastinate's benchmark tasks, on the PostgreSQL database named by ``PEERS_PG_DSN``."""

from __future__ import annotations

import os

from procrastinate import App, PsycopgConnector

from peerjobs.common import record_drain, record_sample

app = App(connector=PsycopgConnector(conninfo=os.environ.get("PEERS_PG_DSN", "")))


@app.task(name="drain")
def drain() -> None:
    """A drain job."""
    record_drain()


@app.task(name="sample")
def sample(i: int) -> None:
    """A latency job for sample ``i``."""
    record_sample(i)
