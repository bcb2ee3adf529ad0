"""A benchmark client: puts jobs for one target, in that target's environment.

Run by the harness (never by hand), with the target's environment variables set:

* ``client.py TARGET enqueue N``: put N drain jobs (no worker is running);
* ``client.py TARGET warmup``: put latency job -1 (the harness waits for it to start);
* ``client.py TARGET latency SAMPLES INTERVAL_MS``: put latency jobs 0..SAMPLES-1 one at a
  time, each INTERVAL_MS after the one before (at once after a slower put), and print
  JSON: ``puts``, a list of ``[before, after]`` pairs (the ``time.time()`` read just
  before each put and right after it was committed or acknowledged), and ``retries``,
  the puts retried after a conflict.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from targets import TARGETS


def main(argv: list[str]) -> None:
    """Run one client command (see the module's docstring)."""
    name, command, *args = argv
    target = TARGETS[name]()
    try:
        if command == "enqueue":
            target.enqueue(int(args[0]))
        elif command == "warmup":
            target.put_one(-1)
        elif command == "latency":
            samples, interval = int(args[0]), float(args[1]) / 1000
            put_at = []
            for i in range(samples):
                started = time.monotonic()
                before = time.time()
                target.put_one(i)
                put_at.append((before, time.time()))
                # The workload: each put starts INTERVAL_MS after the one before (at
                # once if that put was slower), never in a burst to catch up: the
                # first put, which opens the client's connection, is slow everywhere.
                time.sleep(max(0.0, started + interval - time.monotonic()))
            print(json.dumps({"puts": put_at, "retries": target.retries}))
        else:
            raise SystemExit(f"unknown command {command!r}")
    finally:
        target.close()


if __name__ == "__main__":
    main(sys.argv[1:])
