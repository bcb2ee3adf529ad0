"""Raw commit rates of the ZODB storages zasync runs on, measured by the peer benchmark.

One small persistent object changed per transaction (as ``bench/throughput.py``'s
``raw_commit_rate``), on an open ``ZODB.DB``: a FileStorage file, a ZEO client,
RelStorage on PostgreSQL with one connection, and with several connections
(threads, each changing its own object) committing at the same time.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import persistent
import transaction


class Small(persistent.Persistent):  # type: ignore[misc]  # persistent is untyped
    """The object each commit changes."""

    value = 0


def commit_rate(db: Any, commits: int, connections: int = 1) -> float:
    """Commits per second: ``connections`` threads share ``commits`` commits of one object each."""
    setup = transaction.TransactionManager()
    conn = db.open(transaction_manager=setup)
    for k in range(connections):
        conn.root()[f"raw-small-{k}"] = Small()
    setup.commit()
    conn.close()
    managers = [transaction.TransactionManager() for _ in range(connections)]
    conns = [db.open(transaction_manager=tm) for tm in managers]
    share = [commits // connections + (k < commits % connections) for k in range(connections)]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        small = conns[k].root()[f"raw-small-{k}"]
        try:
            for _ in range(share[k]):
                small.value += 1
                managers[k].commit()
        except BaseException as e:  # reported by the caller
            errors.append(e)
            managers[k].abort()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    if errors:
        raise errors[0]
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError("raw commits did not finish within 600 s")
    return commits / elapsed
