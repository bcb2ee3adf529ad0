"""A synchronous stand-in for a worker, for tests of the persistent model.

It runs in its own thread with its own connection and transaction manager,
claims due jobs through a registered agent and calls them, as a dispatcher's
pool thread would, until no job is due.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import transaction

import zasync

_worker_uuids: dict[int, uuid.UUID] = {}


def run_until_idle(db: Any, queue_name: str = "", limit: int = 100, sync: bool = True) -> list[Any]:
    """Claim and call due jobs in another thread; return the results in order.

    With ``sync`` the calling thread's transaction is restarted afterwards, so
    its connection sees what the worker committed (and loses uncommitted work).
    """
    results: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        try:
            tm.begin()
            queue = zasync.get_queue(conn, queue_name)
            key = id(db)
            if key not in _worker_uuids or _worker_uuids[key] not in queue.dispatchers:
                _worker_uuids[key] = uuid.uuid4()
                da = queue.dispatchers.register(_worker_uuids[key])
                da["main"] = zasync.Agent(size=1000)
                da.activate()
                tm.commit()
            agent = queue.dispatchers[_worker_uuids[key]]["main"]
            for _ in range(limit):
                job = agent.claimJob()
                if job is None:
                    break
                tm.commit()
                results.append(job())
        except BaseException as error:  # reported to the test thread
            errors.append(error)
        finally:
            tm.abort()
            conn.close()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=240)
    if errors:
        raise errors[0]
    if sync:
        transaction.begin()
    return results
