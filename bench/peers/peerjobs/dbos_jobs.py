"""DBOS's benchmark workflows and its worker (``python -m peerjobs.dbos_jobs``).

A DBOS queue (``DBOS.register_queue``) whose ``worker_concurrency`` is ``PEERS_THREADS``, on the
system database named by ``PEERS_DBOS_URL``.  Clients enqueue with ``DBOSClient``.
"""

from __future__ import annotations

import os
import signal
import threading

from dbos import DBOS, DBOSConfig

from peerjobs.common import record_drain, record_sample

QUEUE = "peers"


@DBOS.workflow(name="drain")
def drain() -> None:
    """A drain job."""
    record_drain()


@DBOS.workflow(name="sample")
def sample(i: int) -> None:
    """A latency job for sample ``i``."""
    record_sample(i)


def main() -> None:
    """Launch DBOS (which runs the queue's workflows) until SIGTERM or SIGINT."""
    config: DBOSConfig = {"name": "peers", "system_database_url": os.environ["PEERS_DBOS_URL"]}
    DBOS(config=config)
    DBOS.launch()
    DBOS.register_queue(QUEUE, worker_concurrency=int(os.environ["PEERS_THREADS"]))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    DBOS.destroy()


if __name__ == "__main__":
    main()
