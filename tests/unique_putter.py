"""A process that puts jobs with unique keys as fast as it can: ``python unique_putter.py URI START KEYS``.

It waits for the file START to exist (so that several putters start together),
then, for each key, puts one job with that key in its own transaction, retrying
conflicts as an application does, and prints one JSON line:
the oid (an int) of the job each put returned, by key, and how many commits
conflicted.
"""

from __future__ import annotations

import json
import operator
import os
import sys
import time

import transaction
from ZODB.POSException import ConflictError

import zasync
from zasync.storage.database import open_database


def main(uri: str, start: str, keys: int) -> None:
    opened = open_database(uri)
    conn = opened.db.open()
    deadline = time.monotonic() + 120
    while not os.path.exists(start):
        if time.monotonic() > deadline:
            raise SystemExit("the start file never appeared")
        time.sleep(0.01)
    returned: dict[str, int] = {}
    conflicts = 0
    for number in range(keys):
        key = f"key-{number}"
        for _try in range(20):
            try:
                job = zasync.get_queue(conn).put(
                    zasync.Job(operator.add, number, os.getpid()), unique_key=key
                )
                transaction.commit()
                break
            except ConflictError:
                transaction.abort()
                conflicts += 1
        else:
            raise SystemExit(f"{key}: 20 conflicts in a row")
        returned[key] = int.from_bytes(job._p_oid, "big")
    print(json.dumps({"returned": returned, "conflicts": conflicts}))
    conn.close()
    opened.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
