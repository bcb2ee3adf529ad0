"""dramatiq's benchmark actors, on the Redis broker named by ``PEERS_REDIS_URL``."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from peerjobs.common import record_drain, record_sample

broker = RedisBroker(url=os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/0"))
dramatiq.set_broker(broker)


@dramatiq.actor
def drain() -> None:
    """A drain job."""
    record_drain()


@dramatiq.actor
def sample(i: int) -> None:
    """A latency job for sample ``i``."""
    record_sample(i)
