"""Celery's benchmark tasks: a Redis broker (``PEERS_REDIS_URL``) and no result backend."""

from __future__ import annotations

import os

from celery import Celery

from peerjobs.common import record_drain, record_sample

app = Celery("peers", broker=os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.task_ignore_result = True


@app.task
def drain() -> None:
    """A drain job."""
    record_drain()


@app.task
def sample(i: int) -> None:
    """A latency job for sample ``i``."""
    record_sample(i)
